"""The on-disk run registry: one folder per run under `models/runs/<id>/`.

Everything a page shows is read from these files, so a page can be reloaded, a second tab
opened, or the server restarted, and the same thing appears:

    config.json     RunConfig as JSON (what was asked for)
    state.json      job state: queued|running|finished|failed|cancelled, pid, heartbeat, progress
    metrics.jsonl   one JSON object per logged step (loss, penalty, overlap per layer, ...)
    log.txt         human-readable log
    adapter/        the peft adapter (safetensors), written only when training finished
    checkpoints/    Trainer checkpoints, for resuming a failed or cancelled run
    eval.json       evaluation results, when evaluated

Writes are atomic (temporary file, then rename) so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from backend import paths, varieties
from backend.errors import RunError

PROBE_STATE = "decoupling.safetensors"  # the probe's state inside each training checkpoint

METHODS = ("baseline", "decoupled")
DEFAULT_DIALECTS = list(varieties.CITY_CODES)  # every city of the offline corpus


@dataclass
class RunConfig:
    """Everything that defines a fine-tuning run. Baseline and decoupled differ only in `lam`."""

    method: str = "decoupled"
    source: str = "offline"
    dialects: list[str] = field(default_factory=lambda: list(DEFAULT_DIALECTS))
    base: str = "default"
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = 2e-3
    lam: float = 1.0  # lambda of the decoupling penalty; forced to 0 for the baseline
    lam_warmup: int = 30  # steps over which lambda ramps linearly from 0
    layers: list[int] | None = None  # None: the model's middle-to-upper layers
    probe_every: int = 10
    probe_rank: int = 8  # k_max: the MSA subspace has at most this many directions
    probe_steps: int = 20  # ELBO steps per probe update
    probe_batch: int = 32  # held-out MSA sentences per probe update
    subspace: str = "probe"  # "probe", "pca" or "both"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    max_length: int = 96
    max_train_pairs: int | None = None
    include_msa: bool = True  # also train on MSA targets (the trade-off row); never penalised
    seed: int = 0
    name: str = ""
    prompt_format: str = "<{source_variety}> {source} <{target_variety}>"
    save_every: int = 100  # checkpoint cadence, for resume

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise RunError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "baseline":
            self.lam = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunError(f"unknown run settings: {', '.join(unknown)}")
        return cls(**data)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2))


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One line per record, flushed at once: a reader never sees half a line it trusts."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete lines only; a torn last line (a crash mid-write) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass
class Run:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def log_path(self) -> Path:
        return self.dir / "log.txt"

    @property
    def adapter_dir(self) -> Path:
        return self.dir / "adapter"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (Trainer state and probe state both written): a
        kill -9 mid-save can leave a newer, partial one, which resuming must skip."""
        complete = [p for p in self.checkpoints_dir.glob("checkpoint-*")
                    if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
                    and (p / PROBE_STATE).is_file()]
        return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)

    @property
    def eval_path(self) -> Path:
        return self.dir / "eval.json"

    def config(self) -> RunConfig:
        try:
            return RunConfig.from_dict(json.loads(self.config_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise RunError(f"run {self.id}: config.json is missing") from None
        except (json.JSONDecodeError, TypeError) as e:
            raise RunError(f"run {self.id}: config.json is unreadable ({e})") from None

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"state": "finished" if self.has_adapter() else "unknown"}
        except json.JSONDecodeError:
            return {"state": "unknown", "error": "state.json is unreadable"}

    def write_state(self, **updates: Any) -> dict[str, Any]:
        state = self.state()
        state.update(updates)
        state["updated"] = time.time()
        write_json_atomic(self.state_path, state)
        return state

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def log(self, message: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def has_adapter(self) -> bool:
        return (self.adapter_dir / "adapter_config.json").exists() and any(
            self.adapter_dir.glob("*.safetensors")
        )

    def eval(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.eval_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def new_run_id(config: RunConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in config.name)[:40]
    return "-".join(x for x in (stamp, config.method, name, secrets.token_hex(2)) if x)


def create_run(config: RunConfig, root: Path | None = None, run_id: str | None = None) -> Run:
    root = root or paths.runs_dir()
    run = Run(root / (run_id or new_run_id(config)))
    run.dir.mkdir(parents=True, exist_ok=False)
    write_json_atomic(run.config_path, config.to_dict())
    return run


def get_run(run_id: str, root: Path | None = None) -> Run:
    root = root or paths.runs_dir()
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise RunError(f"invalid run id {run_id!r}")
    run = Run(root / run_id)
    if not run.dir.is_dir():
        raise RunError(f"no run named {run_id!r} under {root}")
    return run


def list_runs(root: Path | None = None) -> Iterator[Run]:
    """Every run folder, newest first; folders without a readable config are still listed
    (their `config()` raises RunError) so that one corrupted run never hides the others."""
    root = root or paths.runs_dir()
    if not root.is_dir():
        return iter(())
    dirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return iter(Run(d) for d in sorted(dirs, key=lambda d: d.name, reverse=True))
