"""Pretraining the from-scratch base: the mixture, the saved folder, atomicity, the CLIs."""

from __future__ import annotations

import json
import math

import pytest

from backend.errors import CorpusError, UserError
from backend.modeling import load_base
from backend.pretrain import MIN_MSA_SHARE, PRESETS, build_mixture, pretrain_base


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.is_dir() else []


def test_mixture_is_msa_dominant_train_only_and_covers_every_dialect(toy_parallel_corpus):
    msa, dialect, stats = build_mixture(toy_parallel_corpus, msa_share=0.85, seed=0)
    held_out = {t for p in toy_parallel_corpus.pairs if p.split != "train" for t in (p.source, p.target)}
    assert not (set(msa) | set(dialect)) & held_out
    msa_chars, dial_chars = sum(map(len, msa)), sum(map(len, dialect))
    assert msa_chars / (msa_chars + dial_chars) >= MIN_MSA_SHARE
    assert stats["msa_share_chars"] >= MIN_MSA_SHARE
    assert set(stats["dialect_varieties"]) == {"CAI", "BEI", "RIY"}
    assert len(dialect) < stats["dialect_texts_available"]  # the share, not the corpus, limited it
    assert build_mixture(toy_parallel_corpus, 0.85, seed=0)[:2] == (msa, dialect)


def test_mixture_without_msa_is_a_corpus_error(toy_parallel_corpus):
    from backend.data.corpus import ParallelCorpus

    no_msa = ParallelCorpus("x", [p.__class__(p.id, p.target, "CAI", p.target, "BEI", p.split)
                                  for p in toy_parallel_corpus.pairs])
    with pytest.raises(CorpusError, match="no MSA"):
        build_mixture(no_msa)


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
    assert all(p.msa_share >= MIN_MSA_SHARE for p in PRESETS.values())


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
    assert info["mixture"]["msa_share_chars"] >= MIN_MSA_SHARE
    assert info["mixture"]["msa_share_tokens"] >= MIN_MSA_SHARE
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
    from backend.pretrain import _monolingual_msa, _resolve_source

    monkeypatch.setenv("DD_SHARED_DATA", str(dial2msa_dir.parent))
    source = _resolve_source("offline", PRESETS["dial2msa"])
    assert source == f"csv:{dial2msa_dir}"
    corpus = load_corpus(source)
    msa, dialect, stats = build_mixture(corpus, PRESETS["dial2msa"].msa_share, 0, _monolingual_msa("offline"))
    assert stats["msa_share_chars"] >= MIN_MSA_SHARE
    assert set(stats["dialect_varieties"]) == {"EGY", "GLF", "LEV", "MGR"}
    assert stats["msa_texts_added_monolingual"] > 0
    dev = {t for p in corpus.pairs if p.split != "train" for t in (p.source, p.target)}
    assert not (set(msa) | set(dialect)) & dev


@pytest.mark.slow
def test_pretrain_cli_builds_a_named_base(models_root, capsys):
    from backend.__main__ import main

    assert main(["pretrain", "--name", "cli-tiny", "--preset", "tiny", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "params" in out and "perplexity" in out
    assert (models_root / "base" / "cli-tiny" / "pretrain.json").is_file()
    assert main(["pretrain", "--name", "x", "--preset", "tiny", "--source", "nowhere:x"]) == 2
    assert "unknown corpus source" in capsys.readouterr().err
