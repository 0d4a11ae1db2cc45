"""Property-based fuzzing of the data-dir reader: any bytes in any file either load (and then
write + reload to the same DataDir) or raise one DataDirError whose every problem reads
`<dir>/<file>[:<line>]: <problem>` with a real line of that file; no other exception escapes.

200 examples per property by default; `pytest -m slow` runs the 10k-example variants."""
import os
import re
import tempfile

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usad2.data.datadir import DataDir, load_data_dir
from usad2.errors import DataDirError

FILES = ["wav.scp", "segments", "utt2spk", "spk2utt", "utt2dur", "utt2num_samples", "utt2domain",
         "utt2weight", "text", "reco2dur", "utt2pitch", "utt2new"]
CHUNKS = [b"u1", b"u2", b"u3", b"r1", b"r2", b"s1", b" ", b"\t", b"\n", b"\r\n", b"\r", b"\x00",
          b"\xff", b"\xc3\xa9", b"\xef\xbb\xbf", b"\xe2\x80\xa8", b"\xc2\xa0", b"\x85", b"\x1b",
          b"-1", b"0", b"0.5", b"1.5", b"2", b"1e999", b"nan", b"inf", b"1_0", b"\xd9\xa3",
          b"|", b"speech", b"music", b"Music", b"/nonexistent.wav"]
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def base_texts(tmp_path_factory):
    """The files of a valid data dir whose wav.scp points at a real 2 s wav."""
    root = tmp_path_factory.mktemp("fuzz")
    wav = str(root / "a.wav")
    soundfile.write(wav, np.zeros(32000, dtype="float32"), 16000)
    data = DataDir(
        {"r1": wav, "r2": wav},
        segments={"u1": ("r1", 0, 1.5), "u2": ("r1", 1.5, -1), "u3": ("r2", 0.5, 2.0)},
        utt2spk={"u1": "s1", "u2": "s1", "u3": "s2"},
        utt2dur={"u1": 1.5, "u2": 0.5, "u3": 1.5},
        utt2num_samples={"u1": 24000, "u2": 8000, "u3": 24000},
        utt2domain={"u1": "speech", "u2": "music", "u3": "audio"},
        utt2weight={"u1": 1.0, "u2": 2.5, "u3": 0.5},
        text={"u1": "hello world", "u2": "", "u3": "x"},
        reco2dur={"r1": 2.0, "r2": 2.0},
        utt2pitch={"u1": "60 64", "u3": "72"},
    )
    return {name: text.encode() for name, text in data.to_texts().items()}


noise = st.lists(st.one_of(st.sampled_from(CHUNKS), st.binary(max_size=6)), max_size=30).map(
    b"".join)


@st.composite
def mutated_line_files(draw, texts):
    """Apply 1-3 line mutations (delete, duplicate, swap, splice noise, replace a field)."""
    name = draw(st.sampled_from(FILES))
    lines = texts.get(name, b"").split(b"\n")
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "splice", "field", "append"]))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "splice" and lines:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(noise) + lines[i][at:]
        elif op == "field" and lines:
            fields = lines[i].split(b" ")
            fields[draw(st.integers(0, len(fields) - 1))] = draw(noise)
            lines[i] = b" ".join(fields)
        else:
            lines.append(draw(noise))
    return name, b"\n".join(lines)


def random_bytes_file():
    return st.tuples(st.sampled_from(FILES), st.one_of(noise, st.binary(max_size=200)))


def check_case(texts, name, content, drop_reco2dur, allow_pipes):
    """Load the mutated dir: success must round-trip, failure must list located problems."""
    files = dict(texts)
    if drop_reco2dur:
        files.pop("reco2dur")
    files[name] = content
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "d")
        os.mkdir(directory)
        for file_name, data in files.items():
            with open(os.path.join(directory, file_name), "wb") as f:
                f.write(data)
        try:
            loaded = load_data_dir(directory, allow_pipes=allow_pipes, check_audio=True)
        except DataDirError as e:
            assert_located(e, directory, files)
            return
        assert loaded.utt_ids == sorted(loaded.utt_ids)
        loaded.write(os.path.join(tmp, "again"))
        again = load_data_dir(os.path.join(tmp, "again"), allow_pipes=allow_pipes)
        assert again == loaded


PROBLEM = re.compile(r"(?P<dir>.*)/(?P<file>[^/]+?)(?::(?P<line>[0-9]+))?: \S.*", re.S)


def assert_located(error, directory, files):
    assert error.problems, str(error)
    for problem in error.problems:
        m = PROBLEM.fullmatch(problem)
        assert m, problem
        assert m["dir"] == directory and m["file"] in files, problem
        if m["line"] is not None:
            n_lines = len(files[m["file"]].split(b"\n"))
            assert 1 <= int(m["line"]) <= n_lines, problem


@settings(max_examples=200, **SETTINGS)
@given(case=st.data(), drop=st.booleans(), pipes=st.booleans())
def test_line_mutations(base_texts, case, drop, pipes):
    name, content = case.draw(mutated_line_files(base_texts))
    check_case(base_texts, name, content, drop, pipes)


@settings(max_examples=200, **SETTINGS)
@given(file=random_bytes_file(), drop=st.booleans(), pipes=st.booleans())
def test_random_bytes(base_texts, file, drop, pipes):
    check_case(base_texts, file[0], file[1], drop, pipes)


@pytest.mark.slow
@settings(max_examples=10_000, **SETTINGS)
@given(case=st.data(), drop=st.booleans(), pipes=st.booleans())
def test_line_mutations_10k(base_texts, case, drop, pipes):
    name, content = case.draw(mutated_line_files(base_texts))
    check_case(base_texts, name, content, drop, pipes)


@pytest.mark.slow
@settings(max_examples=10_000, **SETTINGS)
@given(file=random_bytes_file(), drop=st.booleans(), pipes=st.booleans())
def test_random_bytes_10k(base_texts, file, drop, pipes):
    check_case(base_texts, file[0], file[1], drop, pipes)


def test_fuzz_harness_catches_unlocated_problems(base_texts):
    """The property is not vacuous: a problem without file or line fails `assert_located`."""
    error = DataDirError("x")
    error.problems = ["/somewhere/else.txt:1: nope"]
    with pytest.raises(AssertionError):
        assert_located(error, "/d", base_texts)
    error.problems = ["/d/utt2spk:99: line past the end"]
    with pytest.raises(AssertionError):
        assert_located(error, "/d", base_texts)
