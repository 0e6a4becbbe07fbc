"""Fine-tuning on the real tiny base: the penalty works, only LoRA trains, runs resume."""

from __future__ import annotations

import json

import pytest
import torch

from backend.runs import RunConfig, create_run
from backend.training import prepare_data, train

pytestmark = pytest.mark.slow

SOURCE = "offline:size=600"


def tiny_config(base, method: str, **overrides) -> RunConfig:
    values = dict(method=method, source=SOURCE, dialects=["CAI", "RAB"], base=str(base), steps=40,
                  batch_size=8, max_length=48, probe_every=4, probe_batch=24, lam=5.0, lam_warmup=4,
                  save_every=1000, learning_rate=3e-3)
    values.update(overrides)
    return RunConfig(**values)


def _late_overlap(run) -> float:
    records = [r for r in run.metrics() if "overlap" in r]
    late = records[len(records) // 2:]
    return sum(sum(r["overlap"].values()) / len(r["overlap"]) for r in late) / len(late)


@pytest.fixture(scope="module")
def pair_of_runs(tiny_base):
    return {m: train(tiny_config(tiny_base, m)) for m in ("baseline", "decoupled")}


def test_both_runs_finish_with_the_same_logged_fields(pair_of_runs):
    for run in pair_of_runs.values():
        assert run.state()["state"] == "finished"
        assert run.has_adapter()
        assert not list(run.adapter_dir.glob("*.bin"))  # safetensors only
        records = run.metrics()
        assert [r["step"] for r in records] == list(range(1, 41))
        probed = [r for r in records if "overlap" in r]
        assert probed and set(probed[0]) >= {"overlap", "probe_acc", "code_bits_msa", "code_bits_dialect", "probe_rank"}
    base_cfg = json.loads(pair_of_runs["baseline"].config_path.read_text())
    dec_cfg = json.loads(pair_of_runs["decoupled"].config_path.read_text())
    diff = {k for k in base_cfg if base_cfg[k] != dec_cfg[k]}
    assert diff == {"method", "lam"}
    assert all(r["lam"] == 0 for r in pair_of_runs["baseline"].metrics())


def test_the_penalty_lowers_the_measured_overlap(pair_of_runs):
    assert _late_overlap(pair_of_runs["decoupled"]) < _late_overlap(pair_of_runs["baseline"])


def test_prepare_data_holds_probe_sentences_out_of_training(tiny_base):
    from backend.modeling import load_base

    _, tokenizer = load_base(str(tiny_base))
    data = prepare_data(tiny_config(tiny_base, "decoupled"), tokenizer)
    assert data.classes == ["MSA", "CAI", "RAB"]
    trained_targets = {tokenizer.decode([t for t in item["labels"] if t >= 0], skip_special_tokens=True).strip()
                       for item in data.items}
    assert not trained_targets & set(data.probe_targets)


def test_only_lora_parameters_receive_gradients(tiny_base):
    from backend.examples import Collator
    from backend.modeling import attach_lora, load_base

    model, tokenizer = load_base(str(tiny_base))
    config = tiny_config(tiny_base, "decoupled")
    model = attach_lora(model, config)
    model.train()
    data = prepare_data(config, tokenizer)
    batch = Collator(tokenizer.pad_token_id)(data.items[:4])
    batch.pop("variety_ids")
    model(**batch).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all("lora_" in n for n in with_grad)


def test_cancel_then_resume_continues_from_the_checkpoint(tiny_base):
    config = tiny_config(tiny_base, "decoupled", steps=12, save_every=4)
    run = create_run(config)
    stop_at = {"step": 6}

    def on_progress(progress):
        if progress["step"] >= stop_at["step"]:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)  # what `jobs cancel` sends

    train(config, run=run, on_progress=on_progress)
    assert run.state()["state"] == "cancelled"
    assert not run.has_adapter()
    assert list(run.checkpoints_dir.glob("checkpoint-*"))
    train(config, run=run, resume=True)
    assert run.state()["state"] == "finished" and run.has_adapter()
    steps = [r["step"] for r in run.metrics()]
    assert steps == sorted(set(steps)) and steps[-1] == 12


def test_unknown_layers_and_missing_dialects_are_clear_errors(tiny_base, tmp_path):
    from backend.errors import UserError

    with pytest.raises(UserError, match="layers"):
        train(tiny_config(tiny_base, "decoupled", layers=[99], steps=2))
    only_cairo = tmp_path / "cai.tsv"
    only_cairo.write_text("source\ttarget\tvariety\tsplit\n" + "".join(
        f"جملة {i}\tجملة {i} دلوقتي\tCAI\ttrain\n" for i in range(20)), encoding="utf-8")
    with pytest.raises(UserError, match="no training pairs for DAM"):
        train(tiny_config(tiny_base, "decoupled", source=f"csv:{only_cairo}", dialects=["DAM"], steps=2))
    assert torch.get_num_threads() >= 1
