"""backend.compare: run pairs, loading base + two adapters, one batched comparison."""

from __future__ import annotations

import json
import shutil

import pytest

from backend import compare, demo, paths
from backend.errors import LimitError, ModelLoadError, RunError
from backend.runs import Run, RunConfig, create_run, write_json_atomic

TINY = demo.DemoOptions.tiny()


def _fake_run(root, run_id: str, config: RunConfig, state: str = "finished", adapter: bool = True) -> Run:
    """A run folder as training leaves it, without training (pairing reads only files)."""
    run = create_run(config, root=root, run_id=run_id)
    run.write_state(state=state)
    if adapter:
        run.adapter_dir.mkdir()
        (run.adapter_dir / "adapter_config.json").write_text("{}")
        (run.adapter_dir / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    return run


def test_pairs_differ_only_in_lambda(tmp_path):
    cfg = dict(source="offline", dialects=["CAI", "BEI"], base="tiny", steps=10)
    base = _fake_run(tmp_path, "20260101-000001-baseline", RunConfig(method="baseline", **cfg))
    dec = _fake_run(tmp_path, "20260101-000002-decoupled", RunConfig(method="decoupled", lam=2.0, lam_warmup=5, **cfg))
    later = _fake_run(tmp_path, "20260101-000003-baseline", RunConfig(method="baseline", **cfg))
    _fake_run(tmp_path, "20260101-000004-decoupled", RunConfig(method="decoupled", **{**cfg, "steps": 20}))
    _fake_run(tmp_path, "20260101-000005-decoupled", RunConfig(method="decoupled", **cfg), state="running",
              adapter=False)
    broken = _fake_run(tmp_path, "20260101-000006-decoupled", RunConfig(method="decoupled", **cfg))
    broken.config_path.write_text("{oops", encoding="utf-8")
    # dialect order does not matter; the newest baseline before it is its partner
    dec2 = _fake_run(tmp_path, "20260101-000007-decoupled",
                     RunConfig(method="decoupled", name="x", **{**cfg, "dialects": ["BEI", "CAI"]}))
    pairs = compare.find_pairs(tmp_path)
    assert [(p.baseline.id, p.decoupled.id) for p in pairs] == [(later.id, dec2.id), (base.id, dec.id)]
    assert compare.get_pair(pairs[1].key, tmp_path).key == pairs[1].key
    assert pairs[0].trained_varieties() == ["MSA", "BEI", "CAI"]
    with pytest.raises(RunError):
        compare.get_pair("nope+nothing", tmp_path)


def test_experiments_are_read_defensively(tmp_path):
    write_json_atomic(tmp_path / "a" / "results.json", {"rows": [], "runs": {"baseline": "b", "decoupled": "d"}})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    assert set(compare.list_experiments(tmp_path)) == {"a", "bad"}
    with pytest.raises(RunError, match="unreadable"):
        compare.read_experiment("bad", tmp_path)
    with pytest.raises(RunError):
        compare.read_experiment("../a", tmp_path)
    b, d = Run(tmp_path / "b"), Run(tmp_path / "d")
    assert compare.experiment_for(compare.RunPair(b, d), tmp_path)[0] == "a"


@pytest.fixture(scope="module")
def pair_model(tiny_base):
    status = demo.build_demo(TINY)
    pair = compare.get_pair(f"{status['runs']['baseline']}+{status['runs']['decoupled']}")
    return compare.load_pair_model(pair, device="cpu")


@pytest.mark.slow
def test_one_batched_call_equals_three_separate_ones(pair_model):
    from backend.modeling import format_prompt, generate

    prompt = format_prompt("أريد أن أشرب القهوة الآن", "MSA", "CAI")
    texts, batched = compare.generate_three(pair_model, prompt, max_new_tokens=12)
    assert batched
    model, tok = pair_model.model, pair_model.tokenizer
    with model.disable_adapter():
        expected = generate(model, tok, [prompt], max_new_tokens=12)
    for name in ("baseline", "decoupled"):
        model.set_adapter(name, inference_mode=True)
        expected += generate(model, tok, [prompt], max_new_tokens=12)
    assert texts == expected
    pair_model.mixed_batch = False
    try:
        assert compare.generate_three(pair_model, prompt, max_new_tokens=12) == (expected, False)
    finally:
        pair_model.mixed_batch = True


@pytest.mark.slow
def test_compare_scores_each_output(pair_model):
    from backend.evaluation.metrics import sentence_chrf

    reference = "عايز اشرب قهوة دلوقتي"
    result = compare.compare(pair_model, "  أريد أن أشرب\nالقهوة الآن ", "Cairo", reference=reference)
    assert result.source == "أريد أن أشرب القهوة الآن" and result.prompt.endswith("<CAI>")
    assert [o.system for o in result.outputs] == ["base", "baseline", "decoupled"]
    assert result.trained_on_target and result.batched
    for out in result.outputs:
        assert out.chrf == pytest.approx(sentence_chrf(out.text, reference))
        if out.text.strip():
            assert out.label in pair_model.identifier.labels and 0 < out.confidence <= 1
    unseen = compare.compare(pair_model, "أريد أن أشرب القهوة", "RIY")
    assert not unseen.trained_on_target and all(o.chrf is None for o in unseen.outputs)


@pytest.mark.slow
def test_bad_input_raises_user_errors(pair_model):
    with pytest.raises(LimitError):
        compare.compare(pair_model, "   ", "CAI")
    with pytest.raises(LimitError):
        compare.compare(pair_model, "كلمة " * 2000, "CAI")


@pytest.mark.slow
def test_missing_or_corrupt_adapter_is_a_load_error(pair_model, tmp_path):
    root = paths.runs_dir()
    copies = []
    for run in (pair_model.pair.baseline, pair_model.pair.decoupled):
        dst = tmp_path / run.id
        shutil.copytree(run.dir, dst)
        copies.append(Run(dst))
    (copies[1].adapter_dir / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError):
        compare.load_pair_model(compare.RunPair(*copies), device="cpu")
    shutil.rmtree(copies[0].adapter_dir)
    with pytest.raises(RunError, match="no saved adapter"):
        compare.load_pair_model(compare.RunPair(*copies), device="cpu")
    assert json.loads((root / pair_model.pair.baseline.id / "config.json").read_text())  # originals untouched
