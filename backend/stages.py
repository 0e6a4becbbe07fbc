"""The experiment's stages as functions, each cached on disk, each reporting `Event`s.

    ensure_base        the base model (pretrained into models/base/<name> when missing)
    train_stage        one adapter; a finished run with the same settings is reused
    eval_stage         a run's evaluation on the held-out split
    compare_stage      paired bootstrap, decoupled against baseline
    entanglement_stage entanglement of base / baseline / decoupled
    seeds_stage        the table over seeds

Every stage takes a `Context` (the experiment's config and folder, its stage cache, the
corpora loaded so far, where progress goes) and stores its result under `stages/`, keyed
by a hash of everything it depends on, so a second call with the same inputs returns at
once and a changed config redoes only what it invalidates. `backend.experiment` chains
them; `backend.arms` adds its own stage through the same Context.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from backend import paths
from backend.data import load_corpus
from backend.errors import RunError, UserError
from backend.events import Event, EventLog, Subscriber
from backend.names import is_hub_id
from backend.runs import Run, RunConfig, create_run, write_json_atomic

Progress = Callable[[str], None]


class Cancelled(RunError):
    """A stage stopped because it was asked to (SIGTERM, a cancel); running again resumes it."""


class Interrupted(BaseException):  # noqa: N818 - it is a stop, not an error
    """What a SIGTERM handler raises between stages (the demo build's). A BaseException, so
    that no `except Exception` or `except UserError` inside a stage swallows the stop."""


def _hash(key: Any) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def expand_source(spec: str) -> str:
    return str(spec).replace("{shared}", str(paths.shared_data_dir()))


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


class StageCache:
    """One JSON file per finished (or started) stage: stages/<kind>-<hash of its inputs>.json."""

    def __init__(self, root: Path) -> None:
        self.root = root / "stages"

    def path(self, kind: str, key: Any) -> Path:
        return self.root / f"{kind}-{_hash(key)}.json"

    def get(self, kind: str, key: Any) -> dict | None:
        try:
            return json.loads(self.path(kind, key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, kind: str, key: Any, record: dict) -> dict:
        write_json_atomic(self.path(kind, key), {"kind": kind, "key": key, "saved": time.time(), **record})
        return record


class Context:
    """What every stage gets. `config` is a `backend.experiment.ExperimentConfig`.

    Progress goes three ways: `say` writes a line to log.txt and to the `progress` text
    callback (a terminal), and every message and step is an `Event` for the subscribers
    and events.jsonl."""

    def __init__(self, config: Any, folder: Path, fresh: bool = False, progress: Progress | None = None,
                 subscribers: Iterable[Subscriber] = ()) -> None:
        self.config = config
        self.dir = folder
        self.cache = StageCache(folder)
        self.fresh = fresh
        self.started = time.time()
        self.stage = "start"
        self.events = EventLog(folder / "events.jsonl", subscribers)
        self._progress = progress or (lambda message: print(message, file=sys.stderr, flush=True))
        self._corpora: dict[str, Any] = {}

    def say(self, message: str, stage: str | None = None) -> None:
        """A line for people (log.txt, the terminal) and the same as an event; `stage` marks
        the start of a new stage."""
        elapsed = time.time() - self.started
        self._progress(f"[{self.config.id} {elapsed:6.0f}s] {message}")
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        if stage:
            self.stage = stage
            self.write_state(state="running", stage=stage, message=message)
        self.emit(Event(self.stage, message=message.strip()))

    def emit(self, event: Event, keep: bool = True) -> None:
        self.events.emit(event, keep)

    def write_state(self, **values: Any) -> None:
        """state.json of the experiment: its stage, pid and start, for `ls` and a terminal."""
        write_json_atomic(self.dir / "state.json", {**values, "pid": os.getpid(), "updated": time.time(),
                                                    "started": self.started})

    def cached(self, kind: str, key: Any) -> dict | None:
        return None if self.fresh else self.cache.get(kind, key)


    def corpus(self, source: str) -> Any:
        if source not in self._corpora:
            self._corpora[source] = load_corpus(source)
        return self._corpora[source]


# --- the base ------------------------------------------------------------------------------

def pretrain_info(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "pretrain.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def ensure_base(ctx: Context) -> tuple[str, str]:
    """(base to load, fingerprint). Pretrains models/base/<name> when it is missing."""
    spec = ctx.config.base
    folder = paths.base_dir(spec.name)
    if not folder.is_dir() and (Path(spec.name).expanduser().is_dir() or is_hub_id(spec.name)):
        return spec.name, spec.name  # a folder elsewhere or a hub model: used as it is
    if folder.is_dir():
        info = pretrain_info(folder)
        preset = info.get("preset")
        if preset and spec.preset and preset != spec.preset:
            raise UserError(f"base model {spec.name!r} exists with preset {preset!r}, but the config asks for "
                            f"{spec.preset!r}; rename the base or delete {folder}")
        ctx.say(f"base model {spec.name}: found ({info.get('params', '?')} parameters)", "base")
        return spec.name, str(info.get("created", folder.stat().st_mtime))
    from backend.pretrain import pretrain_base  # lazy: torch; demo (Home page) imports stages

    ctx.say(f"base model {spec.name}: pretraining with preset {spec.preset}", "base")

    def on_progress(event: dict) -> None:
        if event.get("message"):
            ctx.say(f"  pretrain [{event.get('stage')}] {event['message']}")
        elif event.get("stage") == "train" and event.get("step"):
            total = event.get("steps") or 0
            on_cadence = bool(total) and event["step"] % max(1, total // 10) == 0
            if on_cadence:
                ctx.say(f"  pretrain step {event['step']}/{total} loss {event.get('loss', float('nan')):.3f}")
            ctx.emit(Event("base", step=event["step"], total=total or None,
                           data={"loss": event.get("loss")}), keep=on_cadence)

    path = pretrain_base(name=spec.name, source=expand_source(spec.source), preset=spec.preset,
                         steps=spec.steps, seed=spec.seed, on_progress=on_progress)
    return spec.name, str(pretrain_info(path).get("created"))


# --- training ------------------------------------------------------------------------------

def train_stage(ctx: Context, config: RunConfig, base_fp: str) -> Run:
    """The run for `config`: finished earlier (here or by another experiment), resumed from
    its last checkpoint, or trained now. A Cancelled error if training was stopped."""
    # The name is left out so that settings that coincide (a baseline is the same in a
    # lambda sweep) share one run.
    key = {"run": {k: v for k, v in config.to_dict().items() if k != "name"}, "base": base_fp}
    record = ctx.cached("run", key) or _shared_run(ctx, key)
    label = f"{config.method} ({config.name})"
    if record:
        run = Run(paths.runs_dir() / record["run"])
        if run.dir.is_dir():
            if run.is_complete():
                ctx.say(f"{label}: finished earlier as {run.id}")
                return run
            resume = run.latest_checkpoint() is not None
            ctx.say(f"{label}: {'resuming' if resume else 'restarting'} {run.id}", "train")
            return _train(ctx, config, run, resume)
    run = create_run(config)
    ctx.cache.put("run", key, {"run": run.id})
    ctx.say(f"{label}: training {run.id} ({config.steps} steps, lambda {config.lam})", "train")
    return _train(ctx, config, run, False)


def _shared_run(ctx: Context, key: Any) -> dict | None:
    """A finished run with exactly these settings and base, trained by another experiment
    (a tuning sweep repeats the main setting): reused, not retrained."""
    if ctx.fresh:
        return None
    name = ctx.cache.path("run", key).name
    for other in sorted(ctx.dir.parent.glob(f"*/stages/{name}")):
        try:
            record = json.loads(other.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        run = Run(paths.runs_dir() / str(record.get("run")))
        if run.dir.is_dir() and run.is_complete():
            ctx.say(f"reusing {run.id}, trained with the same settings by experiment {other.parent.parent.name}")
            return ctx.cache.put("run", key, {"run": run.id})
    return None


def _train(ctx: Context, config: RunConfig, run: Run, resume: bool) -> Run:
    from backend.training import train  # lazy: torch; demo (Home page) imports stages

    every = max(1, config.steps // 10)

    def on_progress(p: dict) -> None:
        on_cadence = p["step"] % every == 0 or p["step"] == p["steps"]
        overlap = p.get("overlap")
        if on_cadence:
            ctx.say(f"  {config.method} step {p['step']}/{p['steps']} loss {p['loss']:.3f} "
                    f"penalty {p['penalty']:.3f} overlap {'n/a' if overlap is None else f'{overlap:.3f}'} "
                    f"eta {p['eta_s']:.0f}s")
        ctx.emit(Event("train", step=p["step"], total=p["steps"], run=run.id, method=config.method,
                       data={k: p.get(k) for k in ("loss", "penalty", "overlap", "eta_s")}), keep=on_cadence)

    ctx.emit(Event("train", step=0, total=config.steps, run=run.id, method=config.method))
    run = train(config, run=run, resume=resume, on_progress=on_progress)
    state = run.state().get("state")
    if state == "cancelled":
        ctx.emit(Event("train", run=run.id, method=config.method, state="cancelled",
                       message=f"run {run.id} was cancelled"))
        raise Cancelled(f"run {run.id} was cancelled; re-run the experiment to resume it")
    if state != "finished":
        raise RunError(f"run {run.id} ended {state}; re-run the experiment to resume it")
    return run


# --- evaluation ----------------------------------------------------------------------------

def adapter_stamp(run: Run) -> float | None:
    files = sorted(run.adapter_dir.glob("*.safetensors"))
    return files[0].stat().st_mtime if files else None


def _evaluated_as(report: dict, ev: Any, seed: int) -> bool:
    """Whether a run's eval.json was made exactly as `ev` (an EvalSpec) asks (by another
    experiment that shares the run, say): same split and generation settings."""
    gen = report.get("generation") or {}
    return (report.get("split") == ev.split and gen.get("max_sentences") == ev.max_sentences
            and gen.get("batch_size") == ev.batch_size and gen.get("max_new_tokens") == ev.max_new_tokens
            and gen.get("num_beams") == ev.num_beams and gen.get("seed") == seed)


def eval_stage(ctx: Context, run: Run, source: str, seed: int = 0) -> dict:
    from backend.evaluation.evaluate import evaluate_run  # lazy: sacrebleu; demo (Home page) imports stages

    ev = ctx.config.evaluation
    key = {"run": run.id, "adapter": adapter_stamp(run),
           "eval": {k: v for k, v in asdict(ev).items() if k != "bootstrap"}}
    record = ctx.cached("eval", key)
    existing = run.eval()
    if existing and (run.dir / "outputs.jsonl").is_file() and not ctx.fresh and (
            (record and existing.get("created") == record.get("created")) or _evaluated_as(existing, ev, seed)):
        ctx.say(f"evaluation of {run.id}: done earlier")
        ctx.cache.put("eval", key, {"created": existing["created"]})
        return existing
    ctx.say(f"evaluating {run.id} on {ev.split}", "evaluate")
    report = evaluate_run(run, split=ev.split, max_sentences=ev.max_sentences, batch_size=ev.batch_size,
                          max_new_tokens=ev.max_new_tokens, num_beams=ev.num_beams, seed=seed,
                          corpus=ctx.corpus(source), progress=lambda m: ctx.say(f"  {m}"))
    ctx.cache.put("eval", key, {"created": report["created"]})
    ctx.say(f"  {run.id}: average chrF++ {_fmt(report['average'].get('chrf'))}, "
            f"{report['generation']['sentences_per_s']} sentences/s")
    return report


def compare_stage(ctx: Context, baseline: Run, decoupled: Run, evals: tuple[dict, dict]) -> dict:
    from backend.evaluation.evaluate import compare_runs  # lazy: sacrebleu; demo (Home page) imports stages

    key = {"runs": [baseline.id, decoupled.id], "evals": [e["created"] for e in evals],
           "bootstrap": ctx.config.evaluation.bootstrap}
    record = ctx.cached("compare", key)
    if record:
        return record["result"]
    ctx.say("paired bootstrap: decoupled against baseline", "compare")
    table = compare_runs(baseline, decoupled, n_samples=ctx.config.evaluation.bootstrap)
    ctx.cache.put("compare", key, {"result": table})
    return table


def entanglement_stage(ctx: Context, base: str, base_fp: str, baseline: Run, decoupled: Run, source: str,
                       seed: int = 0) -> dict | None:
    from backend.evaluation.entanglement import entanglement_report  # lazy: torch; demo imports stages

    spec = ctx.config.entanglement
    if not spec.enabled:
        return None
    split = spec.split or ctx.config.evaluation.split
    corpus = ctx.corpus(source)
    pairs = []
    for code in ctx.config.dialects:
        mine = [p for p in corpus.pairs if p.split == split and p.target_variety == code
                and p.source_variety == "MSA" and p.source.strip() and p.target.strip()]
        pairs.extend(mine[: spec.max_pairs])
    if len(pairs) < 4:
        ctx.say(f"entanglement: skipped ({len(pairs)} MSA -> dialect pairs in {split})")
        return None
    key = {"base": base_fp, "runs": [baseline.id, decoupled.id], "adapters": [adapter_stamp(baseline),
           adapter_stamp(decoupled)], "spec": asdict(spec), "pairs": [p.id for p in pairs], "seed": seed}
    record = ctx.cached("entanglement", key)
    if record:
        return record["result"]
    ctx.say(f"entanglement on {len(pairs)} held-out pairs", "entanglement")
    config = baseline.config()
    layers = spec.layers or config.layers
    result = entanglement_report(base, {"baseline": baseline.adapter_dir, "decoupled": decoupled.adapter_dir},
                                 pairs, list(ctx.config.dialects), config.prompt_format, layers=layers,
                                 k=spec.k, max_length=config.max_length, probe_steps=spec.probe_steps,
                                 seed=seed, progress=lambda m: ctx.say(f"  {m}"))
    result["split"] = split
    ctx.cache.put("entanglement", key, {"result": result})
    return result


def seeds_stage(ctx: Context, per_seed: list[dict], seeds: list[int]) -> dict:
    """The table over seeds (means, sd, per-seed deltas, bootstrap stratified over seeds)."""
    from backend.evaluation.evaluate import compare_seeds  # lazy: sacrebleu; demo (Home page) imports stages

    pairs = [(r["runs"]["baseline"], r["runs"]["decoupled"]) for r in per_seed]
    key = {"seeds": seeds, "pairs": pairs, "tables": [_hash({k: r[k] for k in ("rows", "average", "msa")})
                                                      for r in per_seed],
           "bootstrap": ctx.config.evaluation.bootstrap}
    record = ctx.cached("seeds", key)
    if record:
        return record["result"]
    ctx.say(f"paired bootstrap over seeds {', '.join(map(str, seeds))}", "compare")
    tables = [{k: v for k, v in r.items() if k not in ("setting", "label", "source", "entanglement", "training",
                                                       "generation")} for r in per_seed]
    table = compare_seeds(pairs, seeds, n_samples=ctx.config.evaluation.bootstrap, tables=tables)
    ctx.cache.put("seeds", key, {"result": table})
    return table
