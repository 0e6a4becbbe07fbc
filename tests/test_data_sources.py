"""Source strings, the dispatcher's options and filters, and the hub loader's failure paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import paths
from backend.data import Spec, filter_dialects, load_corpus, parse_spec
from backend.data.hub import datasets_dir, is_repo_id, load_hub
from backend.errors import CorpusError, UnknownVarietyError, UserError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("spec", "expected"), [
    ("offline", Spec("offline")),
    (" OFFLINE ", Spec("offline")),
    ("offline:", Spec("offline")),
    ("offline:msa_overlap=0.5,seed=1", Spec("offline", "", {"msa_overlap": "0.5", "seed": "1"})),
    ("offline?size=300&source=ENG", Spec("offline", "", {"size": "300", "source": "ENG"})),
    ("offline:dialects=CAI,BEI,seed=2", Spec("offline", "", {"dialects": "CAI,BEI", "seed": "2"})),
    ("madar:/data/MADAR?cities=CAI,BEI&source=ENG",
     Spec("madar", "/data/MADAR", {"cities": "CAI,BEI", "source": "ENG"})),
    ("csv:a.csv,b.tsv", Spec("csv", "a.csv,b.tsv")),
    ("csv:dir?source_col=src&TARGET_COL=tgt", Spec("csv", "dir", {"source_col": "src", "target_col": "tgt"})),
    ("hub:owner/name?variety=GLF", Spec("hub", "owner/name", {"variety": "GLF"})),
])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(("spec", "words"), [
    ("", "no corpus source"),
    ("   ", "no corpus source"),
    ("madar", "needs a folder"),
    ("ftp:x", "unknown corpus source"),
    ("/some/folder", "unknown corpus source"),
    ("madar:", "needs a folder"),
    ("csv:?variety=EGY", "needs a file"),
    ("hub:", "needs a dataset id"),
    ("offline:colour=blue", "unknown option 'colour'"),
    ("madar:x?source_col=a", "unknown option 'source_col'"),
    ("csv:x?variety", "not key=value"),
    ("csv:x?split=train&split=dev", "given twice"),
    ("offline:seed=1\nseed=2", "one line"),
])
def test_parse_spec_errors_are_one_line_corpus_errors(spec, words):
    with pytest.raises(CorpusError) as err:
        parse_spec(spec)
    assert words in str(err.value) and "\n" not in str(err.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parse_spec_on_any_text_raises_only_user_errors(text):
    try:
        spec = parse_spec(text)
    except UserError:
        return
    assert spec.kind in ("offline", "madar", "csv", "hub")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["madar:/nonexistent/", "csv:/nonexistent/", "hub:", "offline:", "offline?"]),
       rest=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=","), max_size=40))
def test_load_corpus_on_random_specs_raises_only_user_errors(kind, rest):
    # Random text after a kind: whatever it is, the user sees a UserError or gets a corpus.
    # (Paths stay under a folder that does not exist, so the fuzzing never walks the disk.)
    try:
        load_corpus(kind + rest)
    except UserError:
        pass


def test_keyword_options_override_and_none_is_ignored():
    a = load_corpus("offline:size=200,seed=1", seed=2, msa_overlap=None)
    assert a.name == "offline:msa_overlap=0.3,seed=2,size=200,source=MSA"
    with pytest.raises(CorpusError, match="unknown option 'cities'"):
        load_corpus("offline", cities="CAI")
    with pytest.raises(CorpusError, match="has no value"):
        load_corpus("offline:seed=")


def test_dialect_filter_expands_groups_and_names_missing_targets():
    corpus = load_corpus("offline:size=200")
    assert filter_dialects(corpus, "Cairo, msa").target_varieties() == ["CAI", "MSA"]
    assert filter_dialects(corpus, ["EGY"]).target_varieties() == ["ALX", "ASW", "CAI"]  # group -> its cities
    assert load_corpus("offline:size=200", dialects=["TUN"]).target_varieties() == ["TUN"]
    with pytest.raises(CorpusError, match="no pairs for ALE"):
        filter_dialects(filter_dialects(corpus, "CAI"), "ALE")
    with pytest.raises(UnknownVarietyError, match="unknown variety 'Atlantis'"):
        load_corpus("offline:size=200", dialects="Atlantis")


# ----------------------------------------------------------------------------- hub


@pytest.mark.parametrize("repo_id", ["", "noslash", "a/b/c", "-x/y", "x/y-", "a..b/c", "a--b/c", "owner/na me",
                                     "../etc", "x" * 97 + "/y", "owner/name?x"])
def test_hub_rejects_bad_ids_before_any_network_call(repo_id):
    assert not is_repo_id(repo_id)
    with pytest.raises(CorpusError, match="not a Hugging Face dataset id"):
        load_hub(repo_id)


def test_hub_offline_mode_is_a_clear_error_and_writes_nothing():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest
    before = sorted(p.name for p in paths.models_dir().iterdir()) if paths.models_dir().exists() else []
    with pytest.raises(CorpusError) as err:
        load_corpus("hub:someone/some-dataset")
    assert "offline" in str(err.value) and "someone/some-dataset" in str(err.value)
    after = sorted(p.name for p in paths.models_dir().iterdir()) if paths.models_dir().exists() else []
    assert after == before and not datasets_dir().exists()


def test_hub_unreachable_is_one_line_exit_2_and_leaves_nothing(tmp_path):
    # No network here: point the hub client at a closed local port to exercise the
    # download-failure path for real, in a fresh process.
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "DD_MODELS_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "backend", "data", "summary", "--source", "hub:owner/data"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cannot download dataset owner/data") and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_hub_reads_a_finished_download_without_network(tmp_path, monkeypatch):
    # A dataset folder that a past download put in place loads offline through the CSV loader.
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    folder = datasets_dir() / "owner--parallel"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "glf_test.tsv").write_text("source\ttarget\nمرحبا\tهلا\n", encoding="utf-8")
    corpus = load_corpus("hub:owner/parallel")
    assert corpus.name == "hub:owner/parallel"
    assert [(p.target_variety, p.split, p.id) for p in corpus.pairs] == [("GLF", "test", "glf_test:2")]
