"""The recipe's --domain_source (issue 16): stage 3 tags the sets, stages 5-6 train on the posteriors,
stage 9 reports them; recorded without running the verbs (test_recipe_options' fixture)."""
from test_recipe_options import _recipe, _val, recorded_recipe  # noqa: F401 (the fixture)


def _calls(lines, verb):
    return [line.split() for line in lines if line.split()[1] == f"usad2.bin.{verb}"]


def test_domain_source_infer_tags_trains_and_reports(recorded_recipe):
    r, verbs, lines = _recipe(recorded_recipe, "--stage", "3", "--stop_stage", "9", "--domain_source", "infer")
    assert r.returncode == 0, r.stderr
    tags = _calls(lines, "infer_domains")
    assert [_val(c, "--data") for c in tags] == ["dump/raw/train_mix", "dump/raw/dev", "dump/raw/test"]
    assert ["--out" in c for c in tags] == [False, False, True]  # the sets distill reads, in place
    assert _val(tags[2], "--out") == "dump/domains/test" and all(_val(c, "--tagger") == "yamnet" for c in tags)
    order = [line.split()[1] for line in lines]
    assert order.index("usad2.bin.infer_domains") < order.index("usad2.bin.extract_teacher")
    for words in _calls(lines, "distill"):
        assert _val(words, "--domain_source") == "infer"
        assert _val(words, "--out_dir").startswith("exp/usad2_mini6_offline_distill_default_inferdomains")
    report = verbs["report"]
    assert _val(report, "--domains") == "dump/domains/test"
    assert _val(report, "--checkpoint") == \
        "exp/usad2_mini6_offline_distill_default_inferdomains_plus_default/checkpoints/last.pt"


def test_domain_source_labels_is_the_default_and_bad_values_stop(recorded_recipe):
    r, _, lines = _recipe(recorded_recipe, "--stage", "3", "--stop_stage", "6")
    assert r.returncode == 0, r.stderr
    assert not _calls(lines, "infer_domains")
    assert all("--domain_source" not in words for words in _calls(lines, "distill"))
    r, _, lines = _recipe(recorded_recipe, "--domain_source", "guess")
    assert r.returncode != 0 and "--domain_source: labels, infer or mixed, got 'guess'" in r.stderr and not lines
    r, _, lines = _recipe(recorded_recipe, "--stage", "3", "--stop_stage", "3", "--domain_source", "mixed",
                          "--domain_tagger", "conf/my_tagger.yaml")
    assert r.returncode == 0 and [_val(c, "--tagger") for c in _calls(lines, "infer_domains")] == \
        ["conf/my_tagger.yaml"] * 3
