"""LoRA fine-tuning with the decoupling penalty, through transformers' Trainer.

The loop is the library's: `DecouplingTrainer.compute_loss` adds lambda * L_dec, the online
probe is a callback (`ProbeCallback`), and run bookkeeping (metrics.jsonl, state.json
heartbeat, cancellation) is another (`RunRecorder`). The baseline is the very same code with
lambda = 0: the probe still runs and the overlap is still measured on every batch, so both
runs log the same figures and cost nearly the same per step.

Data: the run's dialects (plus MSA targets when `include_msa`) from the TRAIN split. A
held-out pool of MSA sentences feeds the probe; those sentences are removed from the
training targets, so the probe never sees a sentence the model is trained to produce.
Multi-GPU: `accelerate launch -m backend train ...` runs DDP through the Trainer; every process
penalises the same MSA subspace and only the main one writes the run folder (backend.distributed).
The penalty and the probe read their layers through forward hooks (backend.modeling.layers),
never all hidden states.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback, TrainingArguments

from backend import distributed, varieties
from backend.data import ParallelCorpus, load_corpus
from backend.decoupling import MSASubspaceEstimator, collect_states, default_layers
from backend.errors import RunError
from backend.examples import IGNORE, Collator, encode, target_mask
from backend.modeling import attach_lora, autocast_dtype, load_base, pick_device, save_adapter
from backend.modeling.layers import capture
from backend.modeling.targets import adapted_modules
from backend.prompts import Prompter
from backend.runs import PROBE_STATE, Run, RunConfig, append_jsonl, create_run, read_jsonl, write_text_atomic

PROBE_POOL = 512  # held-out MSA sentences reserved for the probe
EXIT_CANCELLED = 3


@dataclass
class TrainingData:
    items: list[dict[str, Any]]  # encoded training examples with variety_ids
    classes: list[str]  # class index -> variety code; 0 is MSA
    probe_prompts: list[str]
    probe_targets: list[str]
    dialect_prompts: list[str]  # a sample of dialect examples for the first probe update
    dialect_targets: list[str]
    dialect_classes: list[int]


def prepare_data(config: RunConfig, tokenizer, corpus: ParallelCorpus | None = None) -> TrainingData:
    corpus = corpus or load_corpus(config.source)
    dialects = [d for d in varieties.parse_list(config.dialects) if d != "MSA"]
    if not dialects:
        raise RunError("choose at least one dialect to train on")
    train = corpus.filter(split="train")
    missing = [d for d in dialects if not any(p.target_variety == d for p in train.pairs)]
    if missing:
        have = ", ".join(v for v in train.target_varieties() if v != "MSA") or "none"
        raise RunError(f"{corpus.name} has no training pairs for {', '.join(missing)}; it has: {have}")
    rng = random.Random(config.seed)
    prompter = Prompter(tokenizer, config.prompt_format)

    # Held-out MSA for the probe: MSA targets of held-out pairs, or the MSA source of
    # MSA->dialect pairs presented the other way round (dialect -> MSA).
    msa_candidates = []
    for p in train.pairs:
        if p.target_variety == "MSA":
            msa_candidates.append((prompter(p.source, p.source_variety, "MSA"), p.target))
        elif p.source_variety == "MSA" and p.target_variety in dialects:
            msa_candidates.append((prompter(p.target, p.target_variety, "MSA"), p.source))
    rng.shuffle(msa_candidates)
    seen, probe = set(), []
    for prompt, text in msa_candidates:
        if text not in seen:
            seen.add(text)
            probe.append((prompt, text))
        if len(probe) >= PROBE_POOL:
            break
    if len(probe) < 8:
        raise RunError(f"{corpus.name} has too few MSA sentences to estimate the MSA subspace ({len(probe)})")
    held_out = {t for _, t in probe}

    targets = set(dialects) | ({"MSA"} if config.include_msa else set())
    pairs = [p for p in train.pairs if p.target_variety in targets and p.target not in held_out]
    rng.shuffle(pairs)
    if config.max_train_pairs:
        pairs = pairs[: config.max_train_pairs]
    classes = ["MSA", *dialects]
    index = {c: i for i, c in enumerate(classes)}
    prompts = [prompter(p.source, p.source_variety, p.target_variety) for p in pairs]
    items = encode(tokenizer, prompts, [p.target for p in pairs], config.max_length,
                   [index[p.target_variety] for p in pairs])
    sample = [i for i, p in enumerate(pairs) if p.target_variety != "MSA"][: config.probe_batch]
    return TrainingData(
        items=items, classes=classes,
        probe_prompts=[p for p, _ in probe], probe_targets=[t for _, t in probe],
        dialect_prompts=[prompts[i] for i in sample], dialect_targets=[pairs[i].target for i in sample],
        dialect_classes=[index[pairs[i].target_variety] for i in sample],
    )


class DecouplingTrainer(Trainer):
    """Adds lambda(t) * L_dec to the LM loss; always measures L_dec, so a baseline logs it too."""

    def __init__(self, *args, estimator: MSASubspaceEstimator, lam: float, lam_warmup: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.estimator, self.lam, self.lam_warmup = estimator, lam, lam_warmup
        self.last: dict[str, Any] = {}

    def current_lambda(self) -> float:
        if self.lam == 0:
            return 0.0
        return self.lam * min(1.0, (self.state.global_step + 1) / max(1, self.lam_warmup))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        variety_ids = inputs.pop("variety_ids")
        # Only the penalty's layers are kept, through hooks that end with this forward (so
        # neither a checkpointing recompute nor the probe's forward ever reaches them).
        with capture(model, self.estimator.layers) as captured:
            outputs = model(**inputs)
        hidden = dict(captured)
        lm_loss = outputs.loss
        labels = inputs["labels"]
        token_y = variety_ids[:, None].expand_as(labels).to(labels.device)
        mask = target_mask(labels) & (token_y != 0)
        lam = self.current_lambda()
        if lam > 0:
            penalty = self.estimator.penalty(hidden, mask, token_y)
            loss = lm_loss + lam * penalty
        else:
            with torch.no_grad():
                penalty = self.estimator.penalty(hidden, mask, token_y)
            loss = lm_loss
        self.last = {
            "lm_loss": float(lm_loss.detach()), "penalty": float(penalty.detach()), "lam": lam,
            "tokens": int(target_mask(labels).sum()),
            "dialect_states": {layer: h[mask].detach() for layer, h in hidden.items()},
            "dialect_y": token_y[mask].detach(),
        }
        return (loss, outputs) if return_outputs else loss


class ProbeCallback(TrainerCallback):
    """Every `probe_every` steps: a fresh held-out MSA batch and the current dialect batch
    update the probe (warm-started) and the MSA subspace the penalty uses next."""

    def __init__(self, data: TrainingData, config: RunConfig, tokenizer, layers: list[int]) -> None:
        self.data, self.config, self.tokenizer, self.layers = data, config, tokenizer, layers
        self.trainer: DecouplingTrainer | None = None
        self.cursor = 0
        self.report: dict[str, Any] | None = None
        self.pool_items: list[dict[str, Any]] | None = None

    def _msa_states(self, model) -> dict[int, torch.Tensor]:
        n, pool = self.config.probe_batch, len(self.data.probe_prompts)
        idx = [(self.cursor + i) % pool for i in range(min(n, pool))]
        self.cursor = (self.cursor + n) % pool
        if self.pool_items is None:
            self.pool_items = encode(self.tokenizer, self.data.probe_prompts, self.data.probe_targets,
                                     self.config.max_length)
        # Batches of 16 sorted by length: less padding to compute than one batch of 32.
        return collect_states(model, self.tokenizer, [], [], self.layers, batch_size=16,
                              items=[self.pool_items[i] for i in idx])

    def _update(self, model, dialect: dict[int, torch.Tensor], dialect_y: torch.Tensor) -> None:
        """Every process calls this at the same steps: under DDP the dialect states of all of
        them feed one update on the main process, whose U and means all then use."""
        estimator = self.trainer.estimator
        device = next(model.parameters()).device
        dialect = {layer: distributed.gather_rows(h, device) for layer, h in dialect.items()}
        dialect_y = distributed.gather_rows(dialect_y, device)
        if len(dialect_y) and distributed.is_main():
            msa = self._msa_states(model)
            self.report = estimator.update(msa, dialect, dialect_y).as_record()
        if distributed.world_size() > 1:
            shared = distributed.broadcast({"bases": estimator.bases, "means": estimator.means,
                                            "seen": estimator.seen})
            estimator.bases, estimator.means, estimator.seen = shared["bases"], shared["means"], shared["seen"]

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.trainer.estimator.ready:  # resumed from a checkpoint
            return
        d = self.data
        if not distributed.is_main():  # the same sample on every process: counted once
            empty = torch.zeros(0, self.trainer.estimator.d)
            self._update(model, dict.fromkeys(self.layers, empty), torch.zeros(0, dtype=torch.long))
            return
        states = collect_states(model, self.tokenizer, d.dialect_prompts, d.dialect_targets, self.layers,
                                max_length=self.config.max_length)
        lengths = [len(x["labels"]) - x["labels"].count(IGNORE) for x in encode(
            self.tokenizer, d.dialect_prompts, d.dialect_targets, self.config.max_length)]
        y = torch.tensor([c for c, n in zip(d.dialect_classes, lengths) for _ in range(n)])
        self._update(model, states, y)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        last = self.trainer.last
        if state.global_step % self.config.probe_every == 0 and last.get("dialect_y") is not None:
            self._update(model, last["dialect_states"], last["dialect_y"])

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir() and state.is_world_process_zero:
            save_file(self.trainer.estimator.state_dict(), str(folder / PROBE_STATE))


class RunRecorder(TrainerCallback):
    """metrics.jsonl (one record per step), state.json heartbeat and progress, cancellation."""

    def __init__(self, run: Run, probe: ProbeCallback, on_progress: Callable[[dict], None] | None = None) -> None:
        self.run, self.probe, self.on_progress = run, probe, on_progress
        self.trainer: DecouplingTrainer | None = None
        self.started = time.time()
        self.tokens = 0
        self.last_beat = 0.0
        self.cancel_requested = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.session_start, self.first_step = time.time(), state.global_step
        self.started = self.session_start - self._resumed_wall()

    def _resumed_wall(self) -> float:
        records = self.run.metrics()
        if records:
            self.tokens = int(records[-1].get("tokens", 0))
            return float(records[-1].get("wall_time", 0.0))
        return 0.0

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        last = self.trainer.last
        # Under DDP: tokens of all processes; a cancellation seen by any stops all of them at
        # the same step (one stopping alone would leave the others waiting forever).
        tokens, cancel = distributed.sum_ints([last.get("tokens", 0), int(self.cancel_requested)], args.device)
        self.tokens += tokens
        if cancel:
            self.cancel_requested = True
            control.should_training_stop = True
            control.should_save = True
        if not state.is_world_process_zero:
            return  # only the main process writes the run folder
        wall = time.time() - self.started
        record = {
            "step": state.global_step, "loss": last["lm_loss"] + last["lam"] * last["penalty"],
            "lm_loss": last["lm_loss"], "penalty": last["penalty"], "lam": last["lam"],
            "learning_rate": float(lr_scheduler.get_last_lr()[0]) if lr_scheduler else None,
            "tokens": self.tokens, "wall_time": round(wall, 3),
        }
        if self.probe.report is not None:
            record.update(self.probe.report)
            self.probe.report = None
        append_jsonl(self.run.metrics_path, record)
        done = state.global_step - self.first_step
        remaining = state.max_steps - state.global_step
        eta = (time.time() - self.session_start) / max(1, done) * remaining
        progress = {"step": state.global_step, "steps": state.max_steps, "loss": record["loss"],
                    "penalty": record["penalty"], "overlap": _mean(record.get("overlap")),
                    "eta_s": round(eta, 1), "tokens_per_s": round(self.tokens / max(wall, 1e-6), 1)}
        if self.on_progress:
            self.on_progress(progress)
        if time.time() - self.last_beat > 1.0 or state.global_step == state.max_steps:
            self.run.beat(progress)
            self.last_beat = time.time()


def _mean(values: dict | None) -> float | None:
    return sum(values.values()) / len(values) if values else None


def _training_args(config: RunConfig, run: Run, device: torch.device) -> TrainingArguments:
    dtype = autocast_dtype(device)
    return TrainingArguments(
        output_dir=str(run.checkpoints_dir),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=min(20, config.steps // 10),
        weight_decay=0.0,
        logging_steps=max(1, config.steps // 10),
        save_strategy="steps",
        save_steps=config.save_every,
        save_total_limit=1,
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        use_cpu=device.type != "cuda",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        disable_tqdm=not sys.stderr.isatty(),
    )


def train(config: RunConfig, run: Run | None = None, resume: bool = False,
          on_progress: Callable[[dict], None] | None = None) -> Run:
    """Train one adapter into its run folder; returns the run (state finished or cancelled).

    Failures are written to state.json and log.txt, then re-raised. Under `accelerate
    launch` every process calls this; only the main one creates and writes the run folder."""
    ddp_device = distributed.setup()
    main = distributed.is_main()
    if run is None:
        run = Run(Path(distributed.broadcast(str(create_run(config).dir) if main else None)))
    if main:
        run.log(f"{'resuming' if resume else 'starting'} {config.method} run {run.id}")
        run.mark_running()
    recorder: RunRecorder | None = None
    previous = signal.getsignal(signal.SIGTERM) if _main_thread() else None
    try:
        torch.manual_seed(config.seed)
        device = ddp_device or pick_device()
        model, tokenizer = load_base(config.base, device=device, dtype=config.dtype, quantize=config.quantize,
                                     gradient_checkpointing=config.gradient_checkpointing)
        tokenizer.padding_side = "right"
        data = prepare_data(config, tokenizer)
        layers = list(config.layers) if config.layers else default_layers(model.config.num_hidden_layers)
        bad = [layer for layer in layers if not 1 <= layer <= model.config.num_hidden_layers]
        if bad:
            raise RunError(f"layers {bad} do not exist; this model has layers 1..{model.config.num_hidden_layers}")
        model = attach_lora(model, config)
        if main:
            run.log(f"LoRA on {', '.join(adapted_modules(model))}")
        model.train()
        estimator = MSASubspaceEstimator(layers, model.config.hidden_size, len(data.classes), config.probe_rank,
                                         config.subspace, config.probe_steps, seed=config.seed)
        checkpoint = run.latest_checkpoint() if resume else None
        if resume and checkpoint is None:
            raise RunError(f"run {run.id} has no checkpoint to resume from")
        if checkpoint is not None and (checkpoint / PROBE_STATE).exists():
            estimator.load_state_dict(load_file(str(checkpoint / PROBE_STATE)))
            step = int(checkpoint.name.split("-")[-1])
            kept = [r for r in read_jsonl(run.metrics_path) if r.get("step", 0) <= step]
            distributed.barrier()  # every process has read the old metrics before they change
            if main:
                write_text_atomic(run.metrics_path, "".join(_jsonl(r) for r in kept))
        elif not resume and main:
            run.metrics_path.unlink(missing_ok=True)
        probe = ProbeCallback(data, config, tokenizer, layers)
        recorder = RunRecorder(run, probe, on_progress)
        trainer = DecouplingTrainer(
            model=model, args=_training_args(config, run, device), train_dataset=data.items,
            data_collator=Collator(tokenizer.pad_token_id), callbacks=[probe, recorder],
            estimator=estimator, lam=config.lam, lam_warmup=config.lam_warmup,
        )
        probe.trainer = recorder.trainer = trainer
        if previous is not None:
            signal.signal(signal.SIGTERM, lambda *_: setattr(recorder, "cancel_requested", True))
        if main:
            run.log(f"{len(data.items)} training examples, classes {data.classes}, layers {layers}, "
                    f"{sum(p.numel() for p in model.parameters() if p.requires_grad)} trainable parameters, "
                    f"{device} x {distributed.world_size()}")
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        if not main:
            return run  # the main process saves the adapter and records how the run ended
        if recorder.cancel_requested and trainer.state.global_step < config.steps:
            run.log(f"cancelled at step {trainer.state.global_step}")
            run.mark_cancelled(heartbeat=time.time())
            return run
        save_adapter(model, run.adapter_dir)
        save_file({f"basis.{k}": v.contiguous() for k, v in estimator.bases.items()}
                  | {f"means.{k}": v.contiguous() for k, v in estimator.means.items()},
                  str(run.dir / "subspace.safetensors"))
        records = run.metrics()
        summary = {"steps": trainer.state.global_step, "wall_time": records[-1]["wall_time"] if records else None,
                   "tokens": records[-1]["tokens"] if records else 0, "classes": data.classes, "layers": layers}
        run.mark_finished(summary=summary)
        run.log(f"finished: adapter saved to {run.adapter_dir}")
        return run
    except BaseException as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if main:
            run.log(f"failed: {type(e).__name__}: {message}")
            run.mark_failed(message, heartbeat=time.time())
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _jsonl(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
