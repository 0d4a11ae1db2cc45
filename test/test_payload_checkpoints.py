"""Checkpoints that carry a pickled payload never run it (issue 14 §1).

For every teacher family that reads a checkpoint, a real checkpoint in that family's format
gets one extra entry: an object whose unpickling calls `os.mkdir(marker)`. Building the teacher,
directly and through each command that takes a teacher card or a checkpoint path, must refuse the
file with a one-line usad2 error and leave `marker` absent. The s3prl case also shows the hole is
real: with the documented opt-in ($USAD2_TRUSTED_CHECKPOINTS) s3prl's own loader runs the payload.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from usad2.errors import CheckpointError, TeacherError, Usad2Error
from usad2.teachers import registry, testing
from usad2.teachers.base import TeacherCard
from usad2.teachers.families import common


class Payload:
    """Unpickling this object calls os.mkdir(marker): the code a hostile checkpoint would run."""

    def __init__(self, marker):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def save_payload_dict(path, obj, marker):
    obj = dict(obj)
    obj["payload"] = Payload(marker)
    torch.save(obj, path)
    return path


def poison(path, marker):
    """Turn the real checkpoint at `path` (file, or a dir holding model.safetensors) into one that
    carries the payload; the loader still finds every real key."""
    path = os.fspath(path)
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            if "model.safetensors" in files:
                from safetensors.torch import load_file

                state = load_file(os.path.join(root, "model.safetensors"))
                os.remove(os.path.join(root, "model.safetensors"))
                save_payload_dict(os.path.join(root, "pytorch_model.bin"), state, marker)
            elif "pytorch_model.bin" in files:
                poison(os.path.join(root, "pytorch_model.bin"), marker)
        return path
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return save_payload_dict(path, obj, marker)


def card(name, **changes):
    d = testing.tiny_card_dict(name, layers=2)
    d.update(changes)
    return TeacherCard.from_dict(d, name)


S3PRL_CONFIG = {"distiller": {"extractor_mode": "default"}, "transformer": {}}


def s3prl_card(upstream, **opts):
    return TeacherCard(name=f"s3prl_{upstream}", family="s3prl", domain="speech", sample_rate=16000, frame_rate=50,
                       num_layers=2, width=768, options=dict(upstream=upstream, **opts))


def make_case(kind, tmp_path, marker):
    """(card, checkpoint path) of a payload checkpoint for teacher family case `kind`."""
    if kind == "hf_wavlm":
        return card("wavlm_base_plus"), poison(testing.write_tiny_wavlm(tmp_path / "wavlm"), marker)
    if kind == "whisper_hf":
        return card("whisper_large_v3"), poison(testing.write_tiny_whisper(tmp_path / "whisper", "hf"), marker)
    if kind == "whisper_openai":
        return card("whisper_large_v3"), poison(testing.write_tiny_whisper(tmp_path, "openai"), marker)
    if kind == "af_whisper":
        return card("af_whisper"), poison(testing.write_tiny_af_whisper(tmp_path / "af3", "release"), marker)
    if kind == "af_whisper_hf":
        return card("af_whisper"), poison(testing.write_tiny_af_whisper(tmp_path / "af3hf", "hf"), marker)
    if kind == "atst_frame":
        return card("atst_frame"), poison(testing.write_tiny_atst(tmp_path / "atst.ckpt"), marker)
    if kind == "muq":
        return card("muq"), poison(testing.write_tiny_muq(tmp_path / "muq"), marker)
    if kind == "muq_bin":
        return card("muq"), poison(testing.write_tiny_muq(tmp_path / "muqbin", fmt="bin"), marker)
    if kind == "fairseq2":
        c = TeacherCard(name="w2v_tiny", family="fairseq2", domain="speech", sample_rate=16000, frame_rate=50,
                        num_layers=2, width=32, options={"arch": "base"})
        return c, save_payload_dict(tmp_path / "w2v.pt", {"model": {"x": torch.zeros(1)}}, marker)
    if kind == "fairseq2_w2vbert":
        c = TeacherCard(name="w2vbert_tiny", family="fairseq2", domain="speech", sample_rate=16000, frame_rate=50,
                        num_layers=24, width=1024, options={"model_family": "w2vbert", "arch": "600m"})
        return c, save_payload_dict(tmp_path / "w2vbert.pt", {"model": {"x": torch.zeros(1)}}, marker)
    if kind == "resemblyzer":
        c = registry.load_card("resemblyzer")
        return c, save_payload_dict(tmp_path / "pretrained.pt", {"model_state": {}}, marker)
    if kind.startswith("s3prl_"):
        upstream = kind[len("s3prl_"):]
        obj = {"Config": S3PRL_CONFIG, "Upstream_Config": S3PRL_CONFIG, "cfg": {}, "model": {}, "Transformer": {}}
        return s3prl_card(upstream), save_payload_dict(tmp_path / f"{upstream}.ckpt", obj, marker)
    raise AssertionError(kind)


S3PRL_UPSTREAMS = ["distiller_local", "tera_local", "mockingjay_local", "wavlm_local", "hubert_local",
                   "wav2vec2_local", "decoar2_local", "apc_local"]
FAMILY_CASES = ["hf_wavlm", "whisper_hf", "whisper_openai", "af_whisper", "af_whisper_hf", "atst_frame", "muq",
                "muq_bin", "fairseq2", "fairseq2_w2vbert", "resemblyzer"] + [f"s3prl_{u}" for u in S3PRL_UPSTREAMS]


@pytest.fixture(autouse=True)
def no_trust(monkeypatch):
    monkeypatch.delenv(common.TRUST_ENV, raising=False)


@pytest.mark.parametrize("kind", FAMILY_CASES)
def test_payload_checkpoint_is_refused_by_every_family(kind, tmp_path):
    if kind.startswith("s3prl_"):
        pytest.importorskip("s3prl")
    if kind.startswith("fairseq2"):
        pytest.importorskip("fairseq2")
    marker = tmp_path / "payload_ran"
    c, path = make_case(kind, tmp_path, marker)
    with pytest.raises(Usad2Error) as err:
        registry.build_teacher(c, checkpoint=path)
    assert not marker.exists(), f"{kind}: the payload ran"
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert os.path.basename(os.fspath(path)) in msg, msg


def test_s3prl_refusal_names_the_global_and_the_opt_in(tmp_path):
    pytest.importorskip("s3prl")
    marker = tmp_path / "payload_ran"
    c, path = make_case("s3prl_distiller_local", tmp_path, marker)
    with pytest.raises(TeacherError) as err:
        registry.build_teacher(c, checkpoint=path)
    msg = str(err.value)
    assert "posix.mkdir" in msg and common.TRUST_ENV in msg and "weights_only=True" in msg
    assert not marker.exists()


def test_s3prl_opt_in_hands_the_file_on_and_the_hole_is_real(tmp_path, monkeypatch):
    """With the file listed as trusted, s3prl's own torch.load(weights_only=False) unpickles it:
    the payload runs. This is what the check prevents by default."""
    pytest.importorskip("s3prl")
    marker = tmp_path / "payload_ran"
    c, path = make_case("s3prl_distiller_local", tmp_path, marker)
    monkeypatch.setenv(common.TRUST_ENV, os.pathsep.join(["/nonexistent", str(path)]))
    with pytest.raises(Usad2Error):  # the payload is not a real distiller checkpoint
        registry.build_teacher(c, checkpoint=path)
    assert marker.exists()


def test_s3prl_extra_conf_files_are_checked_too(tmp_path):
    pytest.importorskip("s3prl")
    marker = tmp_path / "payload_ran"
    cfg = save_payload_dict(tmp_path / "model_config.pt", {}, marker)
    c = s3prl_card("fbank", extra_conf={"model_config": str(cfg)})
    with pytest.raises(TeacherError, match="extra_conf model_config"):
        registry.build_teacher(c)
    assert not marker.exists()


def test_s3prl_plain_checkpoint_with_namespace_still_loads(tmp_path):
    """A legitimate s3prl checkpoint (tensors, dicts, argparse.Namespace) passes the proof."""
    pytest.importorskip("s3prl")
    import argparse

    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    cfg = dict(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
               conv_feature_layers="[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2", conv_pos=16, conv_pos_groups=2,
               relative_position_embedding=True, num_buckets=16, max_distance=64, gru_rel_pos=True,
               normalize=False, extractor_mode="default", layer_norm_first=False)
    torch.manual_seed(0)
    path = tmp_path / "wavlm.pt"
    torch.save({"cfg": cfg, "model": WavLM(WavLMConfig(cfg)).state_dict()}, path)
    common.prove_weights_only(path, "test")
    with_args = tmp_path / "with_args.pt"
    torch.save({"Config": {"a": 1}, "Args": argparse.Namespace(lr=1.0), "w": torch.zeros(2)}, with_args)
    common.prove_weights_only(with_args, "test")  # old s3prl checkpoints keep their arguments so
    c = TeacherCard(name="w", family="s3prl", domain="speech", sample_rate=16000, frame_rate=50, num_layers=2,
                    width=32, options={"upstream": "wavlm_local"})
    teacher = registry.build_teacher(c, checkpoint=path)
    assert teacher.num_layers == 2


def test_s3prl_directory_checkpoint_needs_opt_in(tmp_path, monkeypatch):
    (tmp_path / "ckdir").mkdir()
    with pytest.raises(TeacherError, match="directory"):
        common.prove_weights_only(tmp_path / "ckdir", "test")
    monkeypatch.setenv(common.TRUST_ENV, str(tmp_path))
    common.prove_weights_only(tmp_path / "ckdir", "test")  # a trusted parent dir covers it


# ------------------------------------------------------------------------- every verb with a path


def run_cli(module, args, env_extra=None, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop(common.TRUST_ENV, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], env=env, cwd=cwd, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def payload_setup(tmp_path_factory):
    """A card dir whose s3prl card (`evil`) points at a payload checkpoint, a data dir, a marker."""
    root = tmp_path_factory.mktemp("payload_verbs")
    marker = root / "payload_ran"
    ckpt = save_payload_dict(root / "evil.ckpt", {"Config": S3PRL_CONFIG}, marker)
    cards = root / "cards"
    cards.mkdir()
    d = {"name": "evil", "family": "s3prl", "domain": "speech", "sample_rate": 16000, "frame_rate": 50,
         "num_layers": 12, "width": 768, "source": {"path": str(ckpt)}, "options": {"upstream": "distiller_local"}}
    (cards / "evil.yaml").write_text(yaml.safe_dump(d))
    data = root / "data"
    data.mkdir()
    wav = root / "a.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    (data / "wav.scp").write_text(f"utt1 {wav}\n")
    (data / "utt2domain").write_text("utt1 speech\n")
    return root, marker, ckpt, cards, data


def check_refused(proc, marker):
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert not marker.exists(), "the payload ran:\n" + out
    assert "Traceback" not in out, out
    assert "weights_only=True" in out and common.TRUST_ENV in out, out


def test_extract_teacher_refuses_payload_card(payload_setup):
    pytest.importorskip("s3prl")
    root, marker, ckpt, cards, data = payload_setup
    proc = run_cli("usad2.bin.extract_teacher", ["--data", data, "--teacher", "evil", "--teacher_cards", cards,
                                                 "--out", root / "targets", "--progress", "false"])
    check_refused(proc, marker)


def test_extract_teacher_refuses_payload_checkpoint_option(payload_setup):
    pytest.importorskip("s3prl")
    root, marker, ckpt, cards, data = payload_setup
    c = dict(yaml.safe_load((cards / "evil.yaml").read_text()), name="evil2", source={})
    (cards / "evil2.yaml").write_text(yaml.safe_dump(c))
    proc = run_cli("usad2.bin.extract_teacher", ["--data", data, "--teacher", "evil2", "--teacher_cards", cards,
                                                 "--checkpoint", ckpt, "--out", root / "targets2",
                                                 "--progress", "false"])
    check_refused(proc, marker)


def test_probe_model_card_refuses_payload(payload_setup):
    pytest.importorskip("s3prl")
    root, marker, ckpt, cards, data = payload_setup
    proc = run_cli("usad2.bin.probe", ["--model", "evil", "--data_root", root, "--out", root / "probe",
                                       "--suite", "demo"], {"USAD2_TEACHER_CARDS": str(cards)})
    check_refused(proc, marker)


def test_distill_teachers_refuses_payload(payload_setup):
    pytest.importorskip("s3prl")
    root, marker, ckpt, cards, data = payload_setup
    proc = run_cli("usad2.bin.distill", ["--train_dir", data, "--teachers", "evil", "--student", "tiny",
                                         "--out_dir", root / "exp", "--max_steps", 1, "--teacher_mode", "online",
                                         "--teacher_cards", cards])
    check_refused(proc, marker)


@pytest.mark.parametrize("verb", ["load", "export_init"])
def test_student_paths_refuse_payload(verb, tmp_path):
    """usad2.load and the training-checkpoint reader (export, --init) refuse a payload file."""
    import usad2
    from usad2.models.export import export_from_checkpoint

    marker = tmp_path / "payload_ran"
    path = save_payload_dict(tmp_path / "model.pt", {"format": "usad2-export"}, marker)
    with pytest.raises(CheckpointError, match="weights-only"):
        if verb == "load":
            usad2.load(path)
        else:
            export_from_checkpoint(path, tmp_path / "out.pt")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_trust_list_matches_exact_paths_only(tmp_path, monkeypatch):
    a = tmp_path / "a.pt"
    a.write_bytes(b"")
    monkeypatch.setenv(common.TRUST_ENV, str(tmp_path / "a"))
    assert not common.is_trusted(a)  # a prefix of the name is not a parent dir
    monkeypatch.setenv(common.TRUST_ENV, str(a))
    assert common.is_trusted(a)
    json.dumps(sorted(common.trusted_checkpoints()))
