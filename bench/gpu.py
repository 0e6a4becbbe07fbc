"""Cost of the method against plain LoRA: tokens/s, peak GPU memory and time per step.

Three arms on the same model, data, seed and settings, in one process so that every arm
runs with the same threads and device:

- `lora`: plain peft LoRA through transformers' Trainer; no probe, no penalty, no callbacks
  (a timer only);
- `baseline`: the project's `train()` with lambda 0 (the probe still observes, every step
  is recorded);
- `decoupled`: the project's `train()` with the penalty.

On a CPU the arms take turns step by step (one thread each, never two computing at once)
and each step is timed in its thread's own CPU seconds, so a slow spell of a shared
machine lands on all arms alike; it prints seconds per step, labelled as CPU figures. On a
GPU the arms run one after the other (the order rotates every round), timed in wall
seconds, and it prints target tokens/s and peak allocated GPU memory per arm. Then the
ratios to plain LoRA, as means over all timed steps (the probe's updates included).

    python bench/gpu.py                            # default base, 3 rounds x 43 steps
    python bench/gpu.py --base Qwen/Qwen2.5-0.5B --set dtype=bf16 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ARMS = ("lora", "baseline", "decoupled")


def _now() -> tuple[float, float]:
    """(wall, CPU) seconds. On a shared CPU the process's CPU time is the steadier figure:
    another job stealing the cores stretches wall time, not the work this process does."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time()


def _deltas(stamps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:])]


def _config(args: argparse.Namespace, method: str):
    from backend import varieties
    from backend.runs import RunConfig

    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)  # numbers, true/false, lists
        except ValueError:
            extra[key] = value  # a word: bf16, 4bit, ...
    return RunConfig(method=method, source=args.source, dialects=varieties.parse_list(args.dialects), base=args.base,
                     steps=args.steps, batch_size=args.batch_size, max_length=args.max_length,
                     save_every=10**6, name="bench", **extra)


class Baton:
    """Lock-step turns: the arms run one step each in turn, so a slow spell of a shared
    machine lands on all of them alike, and no two arms ever compute at the same time."""

    def __init__(self, arms: list[str]) -> None:
        self.cond, self.order, self.turn = threading.Condition(), list(arms), arms[0]

    def wait(self, arm: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == arm)

    def pass_on(self, arm: str, leave: bool = False) -> None:
        with self.cond:
            i = self.order.index(arm)
            nxt = self.order[(i + 1) % len(self.order)]
            if leave:
                self.order.remove(arm)
            self.turn = nxt if self.order else ""
            self.cond.notify_all()


class Clock:
    """Per-step (wall, CPU) seconds of one arm; the CPU time is this thread's own."""

    def __init__(self, arm: str, baton: Baton | None) -> None:
        self.arm, self.baton, self.steps = arm, baton, []
        if baton:
            baton.wait(arm)
        self.start = _now()

    def step_done(self) -> None:
        end = _now()
        self.steps.append((end[0] - self.start[0], end[1] - self.start[1]))
        if self.baton:
            self.baton.pass_on(self.arm)
            self.baton.wait(self.arm)
        self.start = _now()

    def finish(self) -> None:
        if self.baton:
            self.baton.pass_on(self.arm, leave=True)


def run_lora(args: argparse.Namespace, scratch: Path, clock: Clock) -> list[int]:
    """Plain peft LoRA: the same base, loading, adapter, data and TrainingArguments as
    `train()`, through transformers' own Trainer."""
    import torch
    from transformers import Trainer, TrainerCallback

    from backend.examples import Collator
    from backend.modeling import attach_lora, load_base, pick_device
    from backend.training import _training_args, prepare_data

    config = _config(args, "baseline")
    torch.manual_seed(config.seed)
    device = pick_device()
    model, tokenizer = load_base(config.base, device=device, dtype=config.dtype, quantize=config.quantize,
                                 gradient_checkpointing=config.gradient_checkpointing)
    tokenizer.padding_side = "right"
    data = prepare_data(config, tokenizer)
    model = attach_lora(model, config)
    model.train()
    collate = Collator(tokenizer.pad_token_id)
    tokens: list[int] = []

    def collator(items):
        batch = collate(items)
        batch.pop("variety_ids")
        tokens.append(int((batch["labels"] != -100).sum()))
        return batch

    class Timer(TrainerCallback):
        def on_step_end(self, *_, **__):
            clock.step_done()

    run = SimpleNamespace(checkpoints_dir=scratch / f"lora-checkpoints-{threading.get_ident()}")
    trainer = Trainer(model=model, args=_training_args(config, run, device), train_dataset=data.items,
                      data_collator=collator, callbacks=[Timer()])
    trainer.train()
    return tokens


def run_project(args: argparse.Namespace, method: str, clock: Clock) -> list[int]:
    """The project's own `train()`: probe, penalty (decoupled only), run recording."""
    from backend.training import train

    run = train(_config(args, method), on_progress=lambda _: clock.step_done())
    seen = [int(r.get("tokens", 0)) for r in run.metrics()]
    return [b - a for a, b in zip([0, *seen], seen)]


def run_round(args: argparse.Namespace, arms: list[str], scratch: Path, lockstep: bool) -> dict[str, tuple]:
    """arm -> (per-step (wall, CPU) seconds, per-step target tokens, peak GPU GiB)."""
    import torch

    def one(arm: str, baton: Baton | None) -> tuple:
        if not lockstep and torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        clock = Clock(arm, baton)
        try:
            tokens = run_lora(args, scratch, clock) if arm == "lora" else run_project(args, arm, clock)
        finally:
            clock.finish()
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() and not lockstep else None
        return clock.steps[args.warmup:], tokens[args.warmup:], peak

    if not lockstep:
        return {arm: one(arm, None) for arm in arms}
    baton, out, errors = Baton(arms), {}, []

    def worker(arm: str) -> None:
        try:
            out[arm] = one(arm, baton)
        except BaseException as e:  # reported below, after the other arms end
            errors.append(f"{arm}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(a,)) for a in arms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("\n".join(errors))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="default")
    ap.add_argument("--source", default="offline")
    ap.add_argument("--dialects", default="CAI,KHA,BEI,AMM,RIY,BAG,SAN,RAB,TUN")
    # 3 warm-up steps + 40 timed ones: the probe updates at 10, 20, 30, 40, i.e. exactly its
    # steady-state share (probe_every = 10) of the timed steps.
    ap.add_argument("--steps", type=int, default=43, help="steps per arm per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3, help="first steps of each arm not timed")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=96)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--sequential", action="store_true",
                    help="one arm after the other (the default on a GPU, where peak memory is per arm); "
                         "otherwise the arms take turns step by step")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any other RunConfig field, for all arms (e.g. dtype=bf16)")
    args = ap.parse_args()
    arms = [a for a in args.arms.split(",") if a]

    import torch

    from backend import paths

    # The runs go to a scratch models folder that shares the real base models, so the app
    # never lists the benchmark's adapters.
    scratch = Path(tempfile.mkdtemp(prefix="dd-bench-gpu-"))
    (scratch / "base").symlink_to(paths.base_models_dir().resolve(), target_is_directory=True)
    os.environ["DD_MODELS_DIR"] = str(scratch)
    cuda = torch.cuda.is_available()
    lockstep = not (cuda or args.sequential)
    where = torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"device: {where}; base {args.base}; batch {args.batch_size}; max length {args.max_length}; "
          f"{args.rounds} rounds x {args.steps} steps per arm, first {args.warmup} not timed, "
          f"{'arms taking turns step by step' if lockstep else 'one arm after the other'}")

    wall: dict[str, list[float]] = {a: [] for a in arms}
    cpu: dict[str, list[float]] = {a: [] for a in arms}
    toks: dict[str, list[int]] = {a: [] for a in arms}
    peak: dict[str, float] = {a: 0.0 for a in arms}
    per_round: list[dict[str, float]] = []
    # The kind of seconds the ratio uses: wall on a GPU, each arm's own CPU time on a CPU.
    clock = wall if cuda else cpu
    for r in range(args.rounds):
        order = arms[r % len(arms):] + arms[: r % len(arms)]
        result = run_round(args, order, scratch, lockstep)
        this: dict[str, float] = {}
        for arm in arms:
            times, tokens, gib = result[arm]
            wall[arm] += [w for w, _ in times]
            cpu[arm] += [c for _, c in times]
            toks[arm] += tokens
            this[arm] = statistics.mean(w if cuda else c for w, c in times)
            peak[arm] = max(peak[arm], gib or 0.0)
        per_round.append(this)
        print(f"round {r + 1}: " + "  ".join(f"{a} {this[a] * 1000:.1f} ms/step" for a in arms), flush=True)

    label = "GPU" if cuda else "CPU"
    # Means, not medians: a probe update every `probe_every` steps is part of the cost.
    for arm in arms:
        w, c = statistics.mean(wall[arm]), statistics.mean(cpu[arm])
        tps = sum(toks[arm]) / sum(wall[arm]) if toks[arm] else float("nan")
        mem = f"  peak GPU memory {peak[arm]:.2f} GiB" if cuda and not lockstep else ""
        typical = statistics.median(clock[arm])
        print(f"{label} {arm:9s} {w * 1000:.1f} ms/step wall, {c * 1000:.1f} ms/step CPU time "
              f"(median step {typical * 1000:.1f}), {tps:.0f} target tokens/s{mem}")
    if "lora" in arms:
        ref = statistics.mean(clock["lora"])
        kind = "wall" if cuda else "CPU-time"
        for arm in arms:
            if arm != "lora":
                rounds = ", ".join(f"{p[arm] / p['lora']:.3f}" for p in per_round)
                print(f"{label} {arm} / plain LoRA {kind} seconds per step: "
                      f"{statistics.mean(clock[arm]) / ref:.3f} (per round: {rounds}; "
                      f"wall: {statistics.mean(wall[arm]) / statistics.mean(wall['lora']):.3f})")

if __name__ == "__main__":
    main()
