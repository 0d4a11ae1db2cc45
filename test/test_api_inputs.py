"""The public model API refuses bad waveforms with named errors (issue 14 §2, §5 long input).

`usad2.load(...)(wavs, lengths)`, `usad2.hear` and the s3prl upstream all reach
`Usad2Model.features`, which checks its input (usad2.models.inputs): NaN/inf samples, integer
samples and negative, fractional or too large lengths raise AudioError naming the item, where
they used to give NaN frames, 32768 times louder input or silently dropped samples. The fuzz
part draws batches mixing all of those and asserts: either AudioError, or finite output of the
right shape, never another exception. 60 examples by default, 10k with `-m slow`.
"""
import os
import resource
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import usad2
from usad2.errors import AudioError
from usad2.models.export import save_export
from usad2.models.inputs import check_model_input
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def export_path(tmp_path_factory):
    torch.manual_seed(0)
    return save_export(Usad2Model(get_preset("tiny")), tmp_path_factory.mktemp("api") / "model.pt")


@pytest.fixture(scope="module")
def model(export_path):
    return usad2.load(export_path)


def batch(seconds=(1.0, 0.5)):
    g = torch.Generator().manual_seed(1)
    n = int(max(seconds) * 16000)
    wavs = torch.zeros(len(seconds), n)
    for i, s in enumerate(seconds):
        wavs[i, :int(s * 16000)] = 0.1 * torch.randn(int(s * 16000), generator=g)
    return wavs, torch.tensor([int(s * 16000) for s in seconds])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_one_non_finite_sample_is_refused_naming_the_item(model, value):
    wavs, lengths = batch()
    wavs[1, 4000] = value
    with torch.no_grad(), pytest.raises(AudioError, match=r"waveform item 1: 1 NaN/inf samples"):
        model(wavs, lengths)


def test_non_finite_padding_beyond_the_length_is_ignored(model):
    wavs, lengths = batch()
    clean = model(wavs, lengths).hidden_states[-1]
    wavs[1, int(lengths[1]):] = float("nan")  # padding never reaches the features
    out = model(wavs, lengths).hidden_states[-1]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, clean)


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_samples_are_refused(model, dtype):
    wavs, lengths = batch()
    ints = (wavs * 32767).to(dtype)
    with pytest.raises(AudioError, match=f"dtype {dtype}"):
        model(ints, lengths)
    if dtype == torch.int16:
        with pytest.raises(AudioError, match="divide by 32768"):
            model(ints, lengths)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
def test_other_float_dtypes_are_accepted(model, dtype):
    wavs, lengths = batch()
    out = model(wavs.to(dtype), lengths).hidden_states[-1]
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("lengths, match", [
    ([-5, 8000], "item 0: negative length -5"),
    ([16000, 16001], "item 1: length 16001 > its 16000 samples"),
    ([1.5, 8000], "not whole sample counts"),
    ([float("nan"), 8000], "not whole sample counts"),
    ([16000], r"shape \(1,\) for a batch of 2"),
    ([[16000, 8000]], r"shape \(1, 2\)"),
    ("abc", "not a sequence of integers"),
    ([True, False], "expected integers"),
])
def test_bad_lengths_are_refused(model, lengths, match):
    wavs, _ = batch()
    with pytest.raises(AudioError, match=match):
        model(wavs, lengths)


def test_whole_float_lengths_are_accepted(model):
    wavs, lengths = batch()
    a = model(wavs, lengths).hidden_states[-1]
    b = model(wavs, lengths.double()).hidden_states[-1]
    assert torch.equal(a, b)


def test_bad_batch_forms_are_refused(model):
    with pytest.raises(AudioError, match="expected a"):
        model("not audio")
    with pytest.raises(AudioError, match=r"shape \(16000,\)"):
        model(torch.zeros(16000))
    with pytest.raises(AudioError, match="item 1: expected a torch tensor"):
        model([torch.zeros(16000), [0.0] * 16000])
    with pytest.raises(AudioError, match="item 0: 2 NaN/inf"):
        model([torch.full((16000,), float("nan")).index_fill_(0, torch.arange(2, 16000), 0.0)])
    with pytest.raises(AudioError, match="no waveforms"):
        model([])


def test_hear_and_s3prl_upstream_share_the_checks(export_path):
    import usad2.hear as hear

    hm = hear.load_model(str(export_path))
    audio = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(3))
    audio[0, 100] = float("nan")
    with pytest.raises(AudioError, match="item 0: 1 NaN/inf"):
        hear.timestamp_embeddings(audio, hm)
    with pytest.raises(AudioError, match="dtype torch.int16"):
        hear.scene_embeddings((audio.nan_to_num() * 32767).to(torch.int16), hm)
    pytest.importorskip("s3prl")
    from usad2.s3prl_upstream.expert import UpstreamExpert

    expert = UpstreamExpert(ckpt=str(export_path))
    with torch.no_grad(), pytest.raises(AudioError, match="NaN/inf"):
        expert([audio[0], audio[1]])


def test_check_model_input_returns_long_lengths():
    wavs, lengths = batch()
    assert check_model_input(wavs, None).tolist() == [16000, 16000]
    assert check_model_input(wavs, lengths.tolist()).dtype == torch.long


# ------------------------------------------------------------------------------ fuzz

SAMPLES = st.one_of(st.floats(-1, 1, width=32), st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0]))


@st.composite
def api_inputs(draw):
    b = draw(st.integers(1, 3))
    n = draw(st.integers(300, 2400))
    wavs = torch.zeros(b, n)
    for _ in range(draw(st.integers(0, 4))):
        wavs[draw(st.integers(0, b - 1)), draw(st.integers(0, n - 1))] = draw(SAMPLES)
    wavs += 0.05 * torch.randn(b, n, generator=torch.Generator().manual_seed(draw(st.integers(0, 9))))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int16, torch.int32]))
    if not dtype.is_floating_point:
        wavs = (wavs.nan_to_num(0.0, 1.0, -1.0) * 32767).to(dtype)
    else:
        wavs = wavs.to(dtype)
    kind = draw(st.sampled_from(["none", "ints", "tensor", "floats", "wrong_size"]))
    lengths = None
    if kind != "none":
        lengths = [draw(st.integers(-3, n + 3)) for _ in range(b + (kind == "wrong_size"))]
        if kind == "tensor":
            lengths = torch.tensor(lengths)
        elif kind == "floats":
            lengths = [x + draw(st.sampled_from([0.0, 0.5])) for x in lengths]
    as_list = draw(st.booleans())
    return (list(wavs) if as_list else wavs), lengths


def check_api_input(model, wavs, lengths):
    try:
        with torch.no_grad():
            out = model(wavs, lengths)
    except AudioError as e:
        assert "\n" not in str(e)
        return
    for h in out.hidden_states:
        assert torch.isfinite(h).all()
        assert h.shape[0] == len(wavs)


@settings(max_examples=60, **SETTINGS)
@given(api_inputs())
def test_fuzz_api_inputs(model, inp):
    check_api_input(model, *inp)


@pytest.mark.slow
@settings(max_examples=10000, **SETTINGS)
@given(api_inputs())
def test_fuzz_api_inputs_slow(model, inp):
    check_api_input(model, *inp)


# ---------------------------------------------------------------------- long input, out of memory


def test_long_forward_out_of_memory_is_a_named_error(tmp_path):
    """10 minutes in one forward needs ~29 GB for attention; with the address space capped 2 GiB
    above what the process already maps, the real CPU allocator fails and the model says why."""
    script = textwrap.dedent("""
        import resource, torch
        torch.set_num_threads(1)
        from usad2.errors import AudioError
        from usad2.models.presets import get_preset
        from usad2.models.wave_encoder import Usad2Model
        m = Usad2Model(get_preset("tiny")).eval()
        vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 2 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
        x = torch.zeros(1, 16000 * 600)
        x[0, ::7] = 0.01
        try:
            with torch.no_grad():
                m(x)
        except AudioError as e:
            print("AudioError:", e)
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", script], env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "AudioError: waveform batch of 1 x up to 600 s: out of memory" in proc.stdout, proc.stdout
    assert "usad2.hear.load_model" in proc.stdout and "Traceback" not in proc.stderr


def test_other_runtime_errors_still_propagate(model):
    from usad2.models.inputs import out_of_memory_error

    assert out_of_memory_error(RuntimeError("shape mismatch"), torch.tensor([10]), 10) is None
    err = out_of_memory_error(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), torch.tensor([100]), 10)
    assert isinstance(err, AudioError) and "1 x up to 1 s" in str(err)
    assert resource  # imported for readers: the subprocess uses RLIMIT_AS
