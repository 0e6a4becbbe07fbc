"""What a user may type: caps, paths under the data roots, hub ids, remote code; and a
repository-wide check that nothing loads pickles or trusts remote code by default."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from backend import paths, safety
from backend.errors import CorpusError, LimitError, PathError, UserError
from backend.runs import RunConfig

REPO = Path(__file__).resolve().parent.parent


# --- caps ------------------------------------------------------------------------------------

def test_check_text_cleans_and_refuses_empty_or_long(monkeypatch):
    assert safety.check_text("  ذهب الولد\x00 إلى السوق \n") == "ذهب الولد  إلى السوق"
    for empty in ("", "   ", "\n\t", "\x00\x01"):
        with pytest.raises(LimitError, match="empty"):
            safety.check_text(empty)
    with pytest.raises(LimitError, match="must be text"):
        safety.check_text(None)
    monkeypatch.setenv("DD_MAX_TEXT_CHARS", "10")
    assert safety.check_text("0123456789") == "0123456789"
    with pytest.raises(LimitError, match=r"11 characters, over the cap of 10.*DD_MAX_TEXT_CHARS"):
        safety.check_text("0123456789A")


def test_check_text_replaces_lone_surrogates():
    out = safety.check_text("abc\ud800def")
    out.encode("utf-8")  # would raise on a surrogate
    assert out.startswith("abc") and out.endswith("def")


def test_default_caps_and_env_overrides(monkeypatch):
    assert safety.limit("text_chars") == safety.MAX_TEXT_CHARS == 500
    monkeypatch.setenv("DD_MAX_STEPS", "50")
    assert safety.limit("steps") == 50
    monkeypatch.setenv("DD_MAX_STEPS", "lots")
    with pytest.raises(LimitError, match="DD_MAX_STEPS='lots' is not a positive whole number"):
        safety.limit("steps")


def test_run_config_caps_say_which_variable_to_change(monkeypatch, tmp_path):
    monkeypatch.setenv("DD_DATA_ROOTS", str(tmp_path))
    ok = safety.check_run_config(RunConfig(steps=10, batch_size=4))
    assert ok.steps == 10 and ok.source == "offline" and ok.base == "default"
    with pytest.raises(LimitError, match=r"6000 training steps is over the cap of 5000.*DD_MAX_STEPS"):
        safety.check_run_config(RunConfig(steps=6000))
    with pytest.raises(LimitError, match="at least 1"):
        safety.check_run_config(RunConfig(steps=0))
    with pytest.raises(LimitError, match="DD_MAX_BATCH_SIZE"):
        safety.check_run_config(RunConfig(batch_size=100_000))
    monkeypatch.setenv("DD_MAX_TRAIN_PAIRS", "1000")
    with pytest.raises(LimitError, match=r"max_train_pairs.*DD_MAX_TRAIN_PAIRS"):
        safety.check_run_config(RunConfig(max_train_pairs=5000))
    safety.check_dataset_size(RunConfig(), 1000)
    with pytest.raises(LimitError, match=r"offers 1001 training pairs.*set max_train_pairs"):
        safety.check_dataset_size(RunConfig(), 1001)
    safety.check_dataset_size(RunConfig(max_train_pairs=10), 10**9)  # the cap on max_train_pairs applies


def test_queue_cap(monkeypatch):
    monkeypatch.setenv("DD_MAX_QUEUE", "2")
    safety.check_queue(1)
    with pytest.raises(LimitError, match=r"2 jobs are already waiting, the cap is 2.*DD_MAX_QUEUE"):
        safety.check_queue(2)


# --- paths -----------------------------------------------------------------------------------

@pytest.fixture
def roots(tmp_path):
    """One data root with a file and a folder inside, and a secret outside it."""
    root = tmp_path / "data"
    (root / "corpus").mkdir(parents=True)
    (root / "corpus" / "a.csv").write_text("source,target\n")
    (tmp_path / "secret.txt").write_text("not for users")
    return [root]


def test_paths_inside_the_roots_resolve(roots):
    root = roots[0]
    assert safety.resolve_user_path("corpus/a.csv", roots) == root / "corpus" / "a.csv"
    assert safety.resolve_user_path(str(root / "corpus"), roots) == root / "corpus"
    assert safety.resolve_user_path("corpus/../corpus/a.csv", roots) == root / "corpus" / "a.csv"
    (root / "link.csv").symlink_to(root / "corpus" / "a.csv")
    assert safety.resolve_user_path("link.csv", roots) == root / "corpus" / "a.csv"


@pytest.mark.parametrize("typed", ["../secret.txt", "corpus/../../secret.txt", "/etc/passwd", "~/.bashrc",
                                   "/", "..", "corpus/../../../../../../etc/passwd"])
def test_escapes_are_refused(roots, typed):
    with pytest.raises(PathError, match="outside the allowed data folders"):
        safety.resolve_user_path(typed, roots)


def test_absolute_path_to_a_sibling_of_the_root_is_refused(roots, tmp_path):
    with pytest.raises(PathError, match="outside"):
        safety.resolve_user_path(str(tmp_path / "secret.txt"), roots)
    lookalike = tmp_path / "data-evil"  # shares the root's prefix as a string, not as a path
    lookalike.mkdir()
    with pytest.raises(PathError, match="outside"):
        safety.resolve_user_path(str(lookalike), roots)


def test_symlinks_pointing_outside_are_refused(roots, tmp_path):
    root = roots[0]
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "escape-dir").symlink_to(tmp_path)
    for typed in ("escape.txt", "escape-dir/secret.txt", str(root / "escape.txt")):
        with pytest.raises(PathError, match="outside"):
            safety.resolve_user_path(typed, roots)


def test_odd_paths_get_one_line_errors(roots):
    with pytest.raises(PathError, match="no path given"):
        safety.resolve_user_path("  ", roots)
    with pytest.raises(PathError, match="NUL"):
        safety.resolve_user_path("corpus/a\x00.csv", roots)
    with pytest.raises(PathError, match="no file or folder 'corpus/missing.csv'"):
        safety.resolve_user_path("corpus/missing.csv", roots)


def test_default_roots_come_from_the_environment(monkeypatch, roots):
    monkeypatch.setenv("DD_DATA_ROOTS", str(roots[0]))
    assert safety.resolve_user_path("corpus/a.csv") == roots[0] / "corpus" / "a.csv"
    with pytest.raises(PathError, match="DD_DATA_ROOTS"):
        safety.resolve_user_path(str(REPO / "README.md"))


def test_source_specs_have_their_paths_resolved(roots, tmp_path):
    root = roots[0]
    assert safety.resolve_source_spec("offline", roots) == "offline"
    assert safety.resolve_source_spec(" offline:msa_overlap=0.3,size=50 ", roots) == "offline:msa_overlap=0.3,size=50"
    assert safety.resolve_source_spec("hub:owner/data-set?variety=GLF", roots) == "hub:owner/data-set?variety=GLF"
    assert safety.resolve_source_spec("madar:corpus?cities=CAI,BEI", roots) == f"madar:{root / 'corpus'}?cities=CAI,BEI"
    spec = safety.resolve_source_spec("csv:corpus/a.csv,corpus?variety=EGY&split=train", roots)
    assert spec == f"csv:{root / 'corpus' / 'a.csv'},{root / 'corpus'}?variety=EGY&split=train"
    with pytest.raises(PathError, match="outside"):
        safety.resolve_source_spec(f"csv:corpus/a.csv,{tmp_path / 'secret.txt'}", roots)
    with pytest.raises(PathError, match="outside"):
        safety.resolve_source_spec("madar:../", roots)
    with pytest.raises(PathError, match="outside"):
        safety.resolve_source_spec("csv:/etc/passwd?source_col=a", roots)
    with pytest.raises(PathError, match="no path given"):
        safety.resolve_source_spec("csv:corpus/a.csv,,corpus", roots)
    with pytest.raises(CorpusError, match="invalid hub id"):
        safety.resolve_source_spec("hub:../../etc", roots)
    with pytest.raises(CorpusError, match="unknown corpus"):
        safety.resolve_source_spec("/etc/passwd", roots)
    with pytest.raises(CorpusError, match="needs a file or folder"):
        safety.resolve_source_spec("csv:", roots)


@pytest.mark.parametrize("repo_id", ["gpt2/gpt2", "Qwen/Qwen2.5-0.5B", "a/b", "my_org/model.v1"])
def test_valid_hub_ids(repo_id):
    assert safety.validate_hub_id(f" {repo_id} ") == repo_id


@pytest.mark.parametrize("repo_id", ["", "gpt2", "a/b/c", "../etc", "a/..", "a/b c", "a/b;rm", "-a/b", "a/b-",
                                     "a--b/c", "a/" + "x" * 97, "https://huggingface.co/a/b", "a\\b", "a/b\nc", "a/\u0628"])
def test_invalid_hub_ids(repo_id):
    with pytest.raises(PathError, match="invalid hub id"):
        safety.validate_hub_id(repo_id)


def test_base_specs(roots, tmp_path):
    root = roots[0]
    assert safety.resolve_base_spec("default", roots) == "default"
    assert safety.resolve_base_spec("tiny", roots) == "tiny"
    assert safety.resolve_base_spec("corpus", roots) == "corpus"  # a name under models/base
    assert safety.resolve_base_spec(str(root / "corpus"), roots) == str(root / "corpus")
    assert safety.resolve_base_spec("Qwen/Qwen2.5-0.5B", roots) == "Qwen/Qwen2.5-0.5B"
    for outside in (str(tmp_path), "../x", "/etc", "a/b/../../../x"):
        with pytest.raises(PathError):
            safety.resolve_base_spec(outside, roots)


def test_trust_remote_code_only_when_the_operator_says_so(monkeypatch):
    monkeypatch.delenv("DD_TRUST_REMOTE_CODE", raising=False)
    assert safety.trust_remote_code() is False
    for value in ("true", "yes", "0", ""):
        monkeypatch.setenv("DD_TRUST_REMOTE_CODE", value)
        assert safety.trust_remote_code() is False
    monkeypatch.setenv("DD_TRUST_REMOTE_CODE", "1")
    assert safety.trust_remote_code() is True


def test_every_refusal_is_a_user_error():
    for cls in (LimitError, PathError, CorpusError):
        assert issubclass(cls, UserError)


# --- the repository --------------------------------------------------------------------------

def _sources() -> list[Path]:
    files = [p for p in (REPO / "backend").rglob("*.py")]
    for extra in ("app.py",):
        if (REPO / extra).is_file():
            files.append(REPO / extra)
    for folder in ("pages", "bench"):
        if (REPO / folder).is_dir():
            files += list((REPO / folder).rglob("*.py"))
    return files


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every call `name(...)`, matching parentheses."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end():i - 1])
    return out


def test_no_unsafe_loading_anywhere_in_the_code():
    problems = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        for args in _calls(text, "torch.load"):
            if not re.search(r"weights_only\s*=\s*True", args):
                problems.append(f"{rel}: torch.load without weights_only=True")
        if re.search(r"trust_remote_code\s*=\s*True", text):
            problems.append(f"{rel}: trust_remote_code=True literal")
        if re.search(r"safe_serialization\s*=\s*False", text):
            problems.append(f"{rel}: save_pretrained(safe_serialization=False) writes pickles")
        if re.search(r"\b(pickle|cPickle|dill|joblib)\.loads?\(", text):
            problems.append(f"{rel}: unpickling")
        if re.search(r"use_safetensors\s*=\s*False", text):
            problems.append(f"{rel}: use_safetensors=False")
    assert not problems, "\n".join(problems)


def test_the_scanner_would_catch_a_violation():
    bad = "x = torch.load(f, map_location='cpu')\ny = torch.load(g, weights_only=True)\n"
    found = [a for a in _calls(bad, "torch.load") if "weights_only=True" not in a]
    assert found == ["f, map_location='cpu'"]


def test_model_loading_reads_the_operator_switch():
    """The loader must take trust_remote_code from the environment, never hard-code it."""
    text = (REPO / "backend" / "modeling" / "base.py").read_text(encoding="utf-8")
    assert "use_safetensors=True" in text
    for args in _calls(text, "from_pretrained"):
        if "trust_remote_code" in args:
            assert re.search(r"trust_remote_code\s*=\s*trust\b", args), args


@pytest.mark.slow
def test_models_are_saved_as_safetensors(tiny_base):
    files = [p.name for p in Path(tiny_base).rglob("*") if p.is_file()]
    assert any(f.endswith(".safetensors") for f in files), files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], files


def test_environment_is_not_trusting_remote_code_in_tests():
    assert os.environ.get("DD_TRUST_REMOTE_CODE") != "1"


def test_the_models_folder_is_not_a_data_root(monkeypatch, tmp_path):
    """A run's own files are never read as a corpus; a base model folder under models/base is
    still a valid base. Refusals name folders relative to the project, never absolute."""
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("DD_DATA_ROOTS", raising=False)
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "outputs.jsonl").write_text("x\ty\n", encoding="utf-8")
    (tmp_path / "base" / "mine").mkdir(parents=True)
    assert paths.models_dir() not in paths.data_roots()
    with pytest.raises(PathError, match="outside the allowed data folders") as e:
        safety.resolve_source_spec(f"csv:{run / 'outputs.jsonl'}")
    assert "(data, ../shared/data)" in str(e.value)  # the roots, relative to the project
    shown = paths.redact(str(e.value))  # what a page shows: the typed path too, without its folders
    assert str(tmp_path) not in shown and str(REPO) not in shown and "outputs.jsonl" in shown
    assert safety.resolve_base_spec(str(tmp_path / "base" / "mine")) == str(tmp_path / "base" / "mine")
    with pytest.raises(PathError):
        safety.resolve_base_spec(str(run))
