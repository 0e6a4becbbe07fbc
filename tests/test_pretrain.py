"""Pretraining the from-scratch base: the mixture, the saved folder, atomicity, the CLIs."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from backend.errors import CorpusError, UserError
from backend.modeling import load_base
from backend.pretrain import MAX_DIALECT_SHARE, PRESETS, build_mixture, pretrain_base


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.is_dir() else []


def test_mixture_follows_its_shares_keeps_out_held_out_text_and_covers_every_dialect():
    from backend.data import load_corpus
    from backend.data.offline import DIALECTS

    corpus = load_corpus("offline:size=150")
    shares = PRESETS["small"].shares()
    docs, stats = build_mixture(corpus, shares, seed=0)
    held_out = {t for p in corpus.pairs if p.split != "train" for t in (p.source, p.target)}
    assert not {t for d in docs for t in (d.text, d.prompt) if t} & held_out
    assert not {d.prompt.split(" ", 1)[1].rsplit(" ", 1)[0] for d in docs if d.prompt} & held_out
    total = sum(d.chars for d in docs)
    for component, share in shares.items():
        got = sum(d.chars for d in docs if d.component == component) / total
        assert abs(got - share) < 0.02, (component, got, share)
    assert stats["dialect_share_chars"] <= MAX_DIALECT_SHARE
    assert set(stats["dialect_varieties"]) == set(DIALECTS)
    into_msa = [d for d in docs if d.component == "into_msa"]
    assert into_msa and all(d.prompt.startswith("<ENG> ") and d.prompt.endswith(" <MSA>") for d in into_msa)
    assert stats["components"]["into_msa"]["passes"] == 1  # the first component is used whole, once
    assert stats["components"]["into_dialect"]["documents"] < stats["components"]["into_dialect"]["available"]
    assert build_mixture(corpus, shares, seed=0)[0] == docs


def test_mixture_without_msa_is_a_corpus_error(toy_parallel_corpus):
    from backend.data.corpus import ParallelCorpus

    no_msa = ParallelCorpus("x", [p.__class__(p.id, p.target, "CAI", p.target, "BEI", p.split)
                                  for p in toy_parallel_corpus.pairs])
    with pytest.raises(CorpusError, match="no MSA"):
        build_mixture(no_msa, PRESETS["small"].shares())


def test_bad_arguments_are_user_errors(toy_parallel_corpus, monkeypatch, tmp_path):
    with pytest.raises(UserError, match="unknown preset"):
        pretrain_base("x", toy_parallel_corpus, preset="huge")
    with pytest.raises(UserError, match="invalid base model name"):
        pretrain_base("../escape", toy_parallel_corpus, preset="tiny")
    with pytest.raises(UserError, match="steps"):
        pretrain_base("x", toy_parallel_corpus, preset="tiny", steps=0)
    monkeypatch.setenv("DD_SHARED_DATA", str(tmp_path))
    with pytest.raises(CorpusError, match="dial2msa"):
        pretrain_base("x", preset="dial2msa")


def test_presets_are_in_their_size_bands():
    def params(p):
        per_layer = 4 * p.hidden * p.hidden + 3 * p.hidden * p.intermediate + 2 * p.hidden
        return p.layers * per_layer + p.vocab_size * p.hidden + p.hidden

    assert 0.2e6 <= params(PRESETS["tiny"]) <= 0.5e6
    assert 5e6 <= params(PRESETS["small"]) <= 20e6
    assert 80e6 <= params(PRESETS["gpu-100m"]) <= 120e6
    for p in PRESETS.values():
        shares = p.shares()
        assert abs(sum(shares.values()) - 1) < 1e-9
        assert shares.get("into_dialect", 0) + shares.get("dialect", 0) <= MAX_DIALECT_SHARE + 0.2 * (p.source is not None)


@pytest.mark.slow
def test_tiny_pretrain_gives_a_complete_loadable_model(tiny_base, models_root):
    assert tiny_base == models_root / "base" / "tiny"
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "pretrain.json"):
        assert (tiny_base / f).is_file(), f
    assert not list(tiny_base.glob("*.bin")) and not _leftovers(tiny_base.parent)
    info = json.loads((tiny_base / "pretrain.json").read_text(encoding="utf-8"))
    for key in ("params", "steps", "tokens_seen", "wall_time_s", "device", "dev", "mixture", "loss_curve"):
        assert info[key] is not None, key
    assert 0.1e6 <= info["params"] <= 0.6e6
    assert info["mixture"]["dialect_share_chars"] <= MAX_DIALECT_SHARE
    manifest = json.loads((tiny_base / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["files"]) >= {"model.safetensors", "config.json", "tokenizer.json", "pretrain.json"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((tiny_base / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert manifest["seed"] == 0 and manifest["corpus"] == "offline" and manifest["command"]
    curve = [c["loss"] for c in info["loss_curve"]]
    assert curve[0] > curve[-1] + 0.5  # learned something
    assert curve[0] > 0.8 * math.log(info["architecture"]["vocab_size"])  # started near uniform
    dev = info["dev"]
    assert dev["split"] == "dev" and dev["texts"] > 0
    assert 1 < dev["perplexity"] < info["architecture"]["vocab_size"]  # better than uniform
    model, tok = load_base(str(tiny_base))
    assert model.num_parameters() == info["params"]


@pytest.mark.slow
def test_failed_pretrain_leaves_no_model_folder(toy_parallel_corpus, models_root):
    def boom_at(stage, step=None):
        def on_progress(event):
            if event["stage"] == stage and (step is None or event.get("step") == step):
                raise RuntimeError("injected failure")
        return on_progress

    for stage, step in (("train", 3), ("save", None)):
        with pytest.raises(RuntimeError, match="injected"):
            pretrain_base("broken", toy_parallel_corpus, preset="tiny", steps=5, on_progress=boom_at(stage, step))
        assert not (models_root / "base" / "broken").exists()
        assert not _leftovers(models_root / "base")


@pytest.mark.slow
def test_pretrain_replaces_an_existing_model_and_reports_progress(toy_parallel_corpus, models_root):
    events = []
    first = pretrain_base("again", toy_parallel_corpus, preset="tiny", steps=3, on_progress=events.append)
    assert [e["step"] for e in events if e["stage"] == "train"] == [1, 2, 3]
    assert events[-1]["stage"] == "done" and events[-1]["path"] == str(first)
    second = pretrain_base("again", toy_parallel_corpus, preset="tiny", steps=4)
    assert second == first
    assert json.loads((second / "pretrain.json").read_text())["steps"] == 4
    assert not _leftovers(models_root / "base")


@pytest.mark.slow
def test_generate_cli_prints_one_line_per_text(tiny_base, capsys):
    from backend.__main__ import main

    assert main(["generate", "--base", str(tiny_base), "--target", "Cairo", "--text", "ذهب الولد",
                 "--text", "أريد القهوة", "--max-new-tokens", "5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["generate", "--base", str(tiny_base), "--target", "Atlantis", "--text", "x"]) == 2
    assert "unknown variety" in capsys.readouterr().err
    assert main(["generate", "--base", str(tiny_base), "--adapter", "no-such-run", "--target", "CAI",
                 "--text", "x"]) == 2


@pytest.mark.slow
def test_dial2msa_recipe_reads_shared_data_and_stays_msa_dominant(dial2msa_dir, monkeypatch):
    from backend.data import load_corpus
    from backend.pretrain import _extra_corpus, _resolve_source

    monkeypatch.setenv("DD_SHARED_DATA", str(dial2msa_dir.parent))
    source = _resolve_source("offline", PRESETS["dial2msa"])
    assert source == f"csv:{dial2msa_dir}"
    corpus = load_corpus(source)
    recipe = PRESETS["dial2msa"]
    docs, stats = build_mixture(corpus, recipe.shares(), 0, _extra_corpus("offline"),
                                extra_components=recipe.extra_components)
    assert stats["dialect_share_chars"] <= 0.4
    assert set(stats["dialect_varieties"]) == {"EGY", "GLF", "LEV", "MGR"}
    dev = {t for p in corpus.pairs if p.split != "train" for t in (p.source, p.target)}
    assert not {d.text for d in docs} & dev


@pytest.mark.slow
def test_pretrain_cli_builds_a_named_base(models_root, capsys):
    from backend.__main__ import main

    assert main(["pretrain", "--name", "cli-tiny", "--preset", "tiny", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "params" in out and "perplexity" in out
    assert (models_root / "base" / "cli-tiny" / "pretrain.json").is_file()
    assert main(["pretrain", "--name", "x", "--preset", "tiny", "--source", "nowhere:x"]) == 2
    assert "unknown corpus source" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_cli_scores_a_bare_base_on_the_run_table(tiny_base, capsys):
    from backend.__main__ import main

    assert main(["evaluate", "--base", str(tiny_base), "--split", "test", "--dialects", "CAI,BEI",
                 "--max-sentences", "4", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"base {tiny_base} on test")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.split()}
    assert {"CAI", "BEI", "MSA", "AVG"} <= set(rows)  # MSA: ENG -> MSA
    assert rows["CAI"][1] == "4" and rows["AVG"][1] == "8"
    assert main(["evaluate", "--base", str(tiny_base), "some-run"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
