"""The demo build: base model + baseline adapter + decoupled adapter on the offline corpus.

A fresh install has nothing to compare. The Welcome page's one button (and
`python -m backend demo` in a terminal) runs the project's experiment pipeline
(`backend.experiment`) with the demo's settings: the base model is the one shipped in
`models/base/default` (pretrained only when a base of another name is asked for and
missing), the baseline (lambda = 0) and decoupled runs are trained, both are
evaluated on the test split and compared, and the entanglement of base / baseline /
decoupled is measured, so that the Compare, Results and Overlap pages all have something
to show. The experiment caches every stage, so a second click (or a rerun after a crash)
reuses what is done and resumes a half-trained run.

The page never builds in its own script thread: `start_background` spawns a detached
`python -m backend demo` (its own session, so closing the browser or restarting Streamlit
does not kill it) and the page polls `demo_status()`, which reads `models/demo/status.json`.
Only the process holding the `models/demo/build.lock` flock writes that file, so two clicks
(two tabs) cannot start two builds; a status that says "running" while nobody holds the lock
is reported as "interrupted". The lock, the spawn and the cancel (which signals the pid only
while it still names the build: a pid is reused once its process is gone) are the job
queue's (`backend.jobs.locks`, `backend.jobs.process`). Inside the build the experiment's
progress `Event`s (stage, step of total) become one progress fraction, weighted by each
stage's estimated duration.

Durations are estimated from the measured seconds per step of past runs on the same base
(their metrics.jsonl), or, without any, from constants measured on the 2-core development
CPU (see `FALLBACK_SECONDS_PER_STEP`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from backend import paths, varieties
from backend.compare import find_pairs
from backend.errors import JobError, RunError, UserError
from backend.events import Event
from backend.jobs import locks, process
from backend.runs import DEFAULT_DIALECTS, Run, RunConfig, list_runs, read_tail, write_json_atomic
from backend.stages import Cancelled, Interrupted

# Seconds per optimizer step measured on the development machine (2 shared CPU cores),
# used only when no finished run on the same base has measured its own.
FALLBACK_SECONDS_PER_STEP = {"tiny": 0.05, "small": 0.6}
FALLBACK_PRETRAIN_SECONDS_PER_STEP = {"tiny": 0.03, "small": 0.5}
FALLBACK_SECONDS_PER_SENTENCE = {"tiny": 0.01, "small": 0.1}  # batched greedy generation, evaluation
ENTANGLEMENT_SECONDS_PER_PROBE_STEP = 0.05
STARTUP_SECONDS = 10.0  # loading the base and the corpus, first probe update, saving

Status = dict[str, Any]


@dataclass
class DemoOptions:
    """What the demo builds; the defaults are the project's defaults."""

    name: str = "demo"  # the experiment id (models/experiments/<name>)
    base_name: str = "default"
    base_preset: str = "small"
    base_steps: int | None = None
    source: str = "offline"
    dialects: list[str] = field(default_factory=lambda: list(DEFAULT_DIALECTS))
    steps: int = 600  # fewer than RunConfig's 1000, so the build fits in about 6 minutes on 2 cores
    batch_size: int = RunConfig.batch_size
    max_length: int = RunConfig.max_length
    probe_every: int = RunConfig.probe_every
    seed: int = 0
    eval_sentences: int | None = 40  # per variety (25 cities + MSA); None: the whole test split
    entanglement_pairs: int = 8  # per dialect
    entanglement_probe_steps: int = 300

    @classmethod
    def tiny(cls, **overrides: Any) -> DemoOptions:
        """A demo built in about a minute on a CPU (tiny base, 2 dialects, 6 steps): for
        tests, CI and checking an install; its outputs are not meant to be good."""
        values: dict[str, Any] = dict(name="demo-tiny", base_name="tiny", base_preset="tiny",
                                      source="offline:size=400", dialects=["CAI", "BEI"], steps=6, batch_size=4,
                                      max_length=48, probe_every=3, eval_sentences=8, entanglement_pairs=8,
                                      entanglement_probe_steps=30)
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        self.run_config("decoupled")  # the run settings are checked where they are declared, in RunConfig

    def train_settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "batch_size": self.batch_size, "max_length": self.max_length,
                "probe_every": self.probe_every}

    def to_json(self) -> str:
        """These options as one JSON object: how a detached build receives them (no argv round trip)."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> DemoOptions:
        try:
            data = json.loads(text)
        except ValueError:
            raise UserError("the demo options are not valid JSON") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise UserError(f"the demo options must be an object with keys among {', '.join(sorted(known))}")
        return cls(**data)

    def experiment_config(self):
        """The backend.experiment config this demo runs."""
        from backend.experiment import config_from_dict  # lazy: torch; the Home page imports demo

        return config_from_dict({
            "name": self.name, "source": self.source, "dialects": list(self.dialects), "seed": self.seed,
            "description": "the demo models (python -m backend demo)",
            "base": {"name": self.base_name, "preset": self.base_preset, "steps": self.base_steps,
                     "seed": self.seed},
            "train": self.train_settings(),
            "evaluation": {"max_sentences": self.eval_sentences},
            "entanglement": {"max_pairs": self.entanglement_pairs, "probe_steps": self.entanglement_probe_steps},
        })

    def run_config(self, method: str) -> RunConfig:
        """The run config the experiment trains for `method` (used for duration estimates)."""
        return RunConfig(method=method, source=self.source, dialects=varieties.parse_list(self.dialects),
                         base=self.base_name, seed=self.seed, name=self.name, **self.train_settings())

    def to_args(self) -> list[str]:
        """The `python -m backend demo` arguments that reproduce these options."""
        args = ["--name", self.name, "--base-name", self.base_name, "--preset", self.base_preset,
                "--source", self.source, "--dialects", ",".join(self.dialects), "--steps", str(self.steps),
                "--batch-size", str(self.batch_size), "--max-length", str(self.max_length),
                "--probe-every", str(self.probe_every), "--seed", str(self.seed),
                "--eval-sentences", str(self.eval_sentences or 0),
                "--entanglement-pairs", str(self.entanglement_pairs),
                "--entanglement-probe-steps", str(self.entanglement_probe_steps)]
        if self.base_steps is not None:
            args += ["--base-steps", str(self.base_steps)]
        return args


def demo_dir() -> Path:
    return paths.models_dir() / "demo"


def status_path() -> Path:
    return demo_dir() / "status.json"


def log_path() -> Path:
    return demo_dir() / "log.txt"


def _lock_path() -> Path:
    return demo_dir() / "build.lock"


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    with locks.hold(_lock_path(), "the demo build is already running"):
        yield


def build_running() -> bool:
    """True while some process holds the build lock (works across processes and reloads)."""
    return locks.is_locked(_lock_path())


def demo_status() -> Status:
    """The last written status, with `state` corrected to "interrupted" when the build that
    wrote "running" is gone. `{"state": "none"}` when no build was ever started."""
    try:
        status = json.loads(status_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"state": "none"}
    except json.JSONDecodeError:
        return {"state": "none", "error": "the demo status file is unreadable"}
    if status.get("state") in ("starting", "running") and not build_running():
        # "starting" is written by the page just before the child takes the lock; give it a moment.
        if status.get("state") == "running" or time.time() - status.get("updated", 0) > 60:
            status = {**status, "state": "interrupted",
                      "error": status.get("error") or "the build process stopped without finishing"}
    return status


def demo_ready() -> bool:
    """Whether something can be compared: at least one finished run pair exists."""
    return bool(find_pairs())


# --- estimates -------------------------------------------------------------------------------

def _base_preset(base: str) -> str | None:
    folder = Path(base) if Path(base).is_dir() else paths.base_dir(base)
    try:
        return json.loads((folder / "pretrain.json").read_text(encoding="utf-8")).get("preset")
    except (OSError, json.JSONDecodeError):
        return None


def _step_times(records: list[dict[str, Any]]) -> list[float]:
    """Wall time between consecutive logged steps, per step. Start-up and the first probe
    update are excluded this way, which a short run's total / steps would spread over every
    step."""
    walls = [(r.get("step"), r.get("wall_time")) for r in records
             if isinstance(r.get("step"), int) and isinstance(r.get("wall_time"), (int, float))]
    return [(w2 - w1) / (s2 - s1) for (s1, w1), (s2, w2) in zip(walls, walls[1:]) if s2 > s1]


def seconds_per_step(base: str, batch_size: int, runs: list[Run] | None = None) -> tuple[float, str]:
    """(seconds per step, where the figure comes from) for a run on `base`.

    The median step time over every logged step of every run on the same base (finished,
    cancelled or still running: their metrics.jsonl), each scaled linearly by batch size;
    a median over all steps, so that a few slow steps (a busy machine) do not dominate.
    Without any, a constant measured on the development CPU."""
    times: list[float] = []
    n_runs = 0
    for run in runs if runs is not None else list_runs():
        try:
            config = run.config()
        except UserError:
            continue
        if config.base != base:
            continue
        scaled = [t * batch_size / max(1, config.batch_size) for t in _step_times(run.metrics())]
        if scaled:
            times.extend(scaled)
            n_runs += 1
    if times:
        return statistics.median(times), (f"the median of {len(times)} measured steps in {n_runs} "
                                           f"run{'s' if n_runs > 1 else ''} on this base, scaled to this batch size")
    preset = _base_preset(base) or "small"
    per_step = FALLBACK_SECONDS_PER_STEP.get(preset, FALLBACK_SECONDS_PER_STEP["small"])
    per_step *= batch_size / RunConfig.batch_size
    return per_step, f"a constant measured for the '{preset}' base on a 2-core CPU (no run on this base yet)"


def estimate_run_seconds(config: RunConfig, runs: list[Run] | None = None) -> tuple[float, str]:
    per_step, basis = seconds_per_step(config.base, config.batch_size, runs)
    return STARTUP_SECONDS + per_step * config.steps, basis


def stage_estimates(options: DemoOptions | None = None) -> dict[str, float]:
    """Estimated seconds per build stage (base, baseline, decoupled, evaluate); a base that
    exists already costs nothing. Used for the Welcome page's estimate and to weight the
    progress bar."""
    options = options or DemoOptions()
    out: dict[str, float] = {}
    if paths.base_dir(options.base_name).is_dir():
        out["base"] = 1.0
        per_run = [estimate_run_seconds(options.run_config(m))[0] for m in ("baseline", "decoupled")]
    else:
        from backend.pretrain import PRESETS  # lazy: torch; the Home page imports demo

        recipe = PRESETS.get(options.base_preset)
        steps = options.base_steps or (recipe.steps if recipe else 500)
        out["base"] = STARTUP_SECONDS + steps * FALLBACK_PRETRAIN_SECONDS_PER_STEP.get(options.base_preset, 0.5)
        per_step = FALLBACK_SECONDS_PER_STEP.get(options.base_preset, FALLBACK_SECONDS_PER_STEP["small"])
        per_step *= options.batch_size / RunConfig.batch_size
        per_run = [STARTUP_SECONDS + per_step * options.steps] * 2
    out["baseline"], out["decoupled"] = per_run
    sentences = (options.eval_sentences or 300) * (len(options.dialects) + 1)
    per_sentence = FALLBACK_SECONDS_PER_SENTENCE.get(options.base_preset, FALLBACK_SECONDS_PER_SENTENCE["small"])
    out["evaluate"] = (2 * (STARTUP_SECONDS + sentences * per_sentence)
                       + 3 * options.entanglement_probe_steps * ENTANGLEMENT_SECONDS_PER_PROBE_STEP + STARTUP_SECONDS)
    return out


def estimate_demo_seconds(options: DemoOptions | None = None) -> float:
    return sum(stage_estimates(options).values())


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


# --- building --------------------------------------------------------------------------------

STAGES = ("base", "baseline", "decoupled", "evaluate")
# How far into the evaluate stage each experiment stage after training begins.
_EVAL_STAGES = {"evaluate": 0.1, "compare": 0.6, "entanglement": 0.65, "arms": 0.9, "report": 0.95, "done": 1.0}


def _raise_interrupted(*_: Any) -> None:
    raise Interrupted


class _Progress:
    """Subscribes to the experiment's events and turns them into the demo's status.json: one
    fraction over the stages, weighted by their estimates."""

    def __init__(self, options: DemoOptions, on_status: Callable[[Status], None] | None) -> None:
        self.options, self.on_status = options, on_status
        self.weights = stage_estimates(options)
        self.lock = threading.RLock()
        self.written = 0.0
        self.written_stage: str | None = None
        self.dirty = False
        self.status: Status = {"state": "running", "pid": os.getpid(), "pid_start": process.start_ticks(os.getpid()),
                               "started": time.time(), "stages": list(STAGES), "stage": "base", "fraction": 0.0,
                               "message": "starting", "experiment": options.name, "runs": {}, "error": None,
                               "options": asdict(options), "estimate_s": round(sum(self.weights.values()))}

    def on_event(self, event: Event) -> None:
        with self.lock:
            stage, within, extra = self.status["stage"], 0.0, {}
            if event.stage in ("start", "base"):
                stage = "base"
                if event.fraction is not None:
                    within, extra = event.fraction, {"step": event.step, "steps": event.total}
            elif event.stage == "train" and event.method in STAGES:
                stage = event.method
                within = event.fraction or 0.0
                extra = {"step": event.step, "steps": event.total, **{k: event.data.get(k) for k in
                                                                       ("loss", "penalty", "overlap", "eta_s")}}
                if event.run:
                    self.status["runs"][stage] = event.run
            elif event.stage in _EVAL_STAGES:
                stage, within = "evaluate", _EVAL_STAGES[event.stage]
            index = STAGES.index(stage)
            done = sum(self.weights[s] for s in STAGES[:index])
            fraction = (done + min(1.0, within) * self.weights[stage]) / sum(self.weights.values())
            fraction = max(fraction, self.status.get("fraction", 0.0))  # never moves backwards
            self.status.update({"stage": stage, "fraction": round(fraction, 4), "step": None, "steps": None,
                                "eta_s": None, **extra})
            if event.message:
                self.status["message"] = event.message
            self._write(force=stage != self.written_stage)

    def flush(self, force: bool = False) -> None:
        """Write what the last events changed (they are written at most twice a second)."""
        with self.lock:
            if self.dirty or force:
                self._write(True)

    def finish(self, **updates: Any) -> Status:
        with self.lock:
            self.status.update(finished=time.time(), **updates)
            self._write(True)
            return dict(self.status)

    def _write(self, force: bool) -> None:
        now = time.time()
        self.status["heartbeat"] = self.status["updated"] = now
        self.dirty = True
        if force or now - self.written > 0.5:
            self.written, self.dirty, self.written_stage = now, False, self.status["stage"]
            write_json_atomic(status_path(), self.status)
        if self.on_status:
            self.on_status(dict(self.status))


def build_demo(options: DemoOptions | None = None, on_status: Callable[[Status], None] | None = None) -> Status:
    """Build the demo models in this process (the CLI's foreground mode) and return the final
    status. Holds the build lock throughout. SIGTERM stops it: a training run saves a
    checkpoint first, and the next build resumes from there."""
    from backend.experiment import Experiment  # lazy: torch; the Home page imports demo

    options = options or DemoOptions()
    options.dialects = varieties.parse_list(options.dialects)
    config = options.experiment_config()
    with _build_lock():
        progress = _Progress(options, on_status)
        progress.flush(force=True)
        stop = threading.Event()

        def flush() -> None:
            while not stop.wait(1.0):
                progress.flush()

        flusher = threading.Thread(target=flush, name="demo-progress", daemon=True)
        flusher.start()
        previous = None
        if threading.current_thread() is threading.main_thread():
            # Training installs its own SIGTERM handler (stop at the next step) and restores this one.
            previous = signal.signal(signal.SIGTERM, _raise_interrupted)
        try:
            results = Experiment(config, progress=lambda message: None, subscribers=[progress.on_event],
                                 command="python -m backend demo " + " ".join(options.to_args())).run()
            runs = {k: v for k, v in (results.get("runs") or {}).items() if isinstance(v, str)}
            return progress.finish(state="finished", fraction=1.0, stage="evaluate",
                                   message="the demo models are ready", runs=runs)
        except Interrupted:
            return progress.finish(state="cancelled", message="cancelled")
        except Cancelled:
            return progress.finish(state="cancelled", message="cancelled; the next build resumes it")
        except UserError as e:
            progress.finish(state="failed", error=str(e), message=f"failed: {e}")
            raise
        except BaseException as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            progress.finish(state="failed", error=f"{type(e).__name__}: {reason}", message="failed")
            raise
        finally:
            stop.set()
            flusher.join(timeout=5)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


# --- background process ----------------------------------------------------------------------

def start_background(options: DemoOptions | None = None) -> Status:
    """Spawn a detached `python -m backend demo` and return the status it starts with.

    Raises JobError when a build is already running."""
    options = options or DemoOptions()
    if build_running():
        raise JobError("the demo build is already running")
    status = {"state": "starting", "pid": None, "started": time.time(), "updated": time.time(),
              "fraction": 0.0, "message": "starting the build process", "stages": [], "runs": {}}
    write_json_atomic(status_path(), status)  # before the child can write its own
    child = process.spawn(["demo", "--options", options.to_json()], log_path(), reap=True)
    current = demo_status()
    if current.get("state") == "starting" and current.get("pid") is None:
        current = {**current, "pid": child.pid, "pid_start": process.start_ticks(child.pid)}
        write_json_atomic(status_path(), current)
    return current


def cancel_demo() -> Status:
    """Ask the running build to stop (SIGTERM: a training run stops at its next step). The
    signal goes only to the process that wrote the status, never to a later owner of its pid."""
    status = demo_status()
    if status.get("state") not in ("starting", "running") or not status.get("pid"):
        raise RunError("no demo build is running")
    started = status.get("started")
    if not process.terminate(status["pid"], status.get("pid_start"),
                             started if isinstance(started, (int, float)) else None):
        raise RunError("the demo build process is already gone")
    return status


def log_tail(lines: int = 20) -> str:
    return read_tail(log_path(), lines)
