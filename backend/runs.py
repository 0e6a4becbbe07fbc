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
from backend.errors import RunError, UserError

PROBE_STATE = "decoupling.safetensors"  # the probe's state inside each training checkpoint

METHODS = ("baseline", "decoupled")
DEFAULT_DIALECTS = list(varieties.CITY_CODES)  # every city of the offline corpus


def _json_type(value: Any) -> str:
    """How a JSON value is named in a message: `a list`, `text`, `a number`..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What each RunConfig field may hold, by its annotation: a test checks that every field is here.
_SETTING_TYPES = {
    "str": (lambda v: isinstance(v, str), "text"),
    "int": (_is_int, "a whole number"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int | None": (lambda v: v is None or _is_int(v), "a whole number or null"),
    "list[str]": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of texts"),
    "list[int] | None": (lambda v: v is None or (isinstance(v, list) and all(_is_int(x) for x in v)),
                         "a list of whole numbers or null"),
}


@dataclass
class RunConfig:
    """Everything that defines a fine-tuning run. Baseline and decoupled differ only in `lam`."""

    method: str = "decoupled"
    source: str = "offline"
    dialects: list[str] = field(default_factory=lambda: list(DEFAULT_DIALECTS))
    base: str = "default"
    # Fine-tuning defaults chosen on the dev split (experiments/choose_finetune_defaults.py):
    # LoRA on attention and MLP, rank 32, 1000 steps; the README lists the candidates.
    steps: int = 1000
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
    lora_rank: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"])
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
        if not isinstance(data, dict):
            raise RunError(f"run settings must be an object, not {_json_type(data)}")
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise RunError(f"unknown run settings: {', '.join(unknown)}")
        for name, value in data.items():
            check, words = _SETTING_TYPES[known[name]]
            if not check(value):
                raise RunError(f"the setting {name} should be {words}, not {_json_type(value)}")
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
    """The objects among the lines; a torn last line (a crash mid-write), a line that is not
    UTF-8 or not a JSON object is skipped (`Run.damage` is what reports such lines)."""
    return [r for r in _jsonl_lines(path)[0] if isinstance(r, dict)]


def _jsonl_lines(path: Path) -> tuple[list[Any], str | None]:
    """(the parsed lines, what is wrong with the file or None). A torn last line is normal."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], None
    except OSError as e:
        return [], f"cannot be read ({type(e).__name__})"
    out: list[Any] = []
    problem = None
    lines = raw.splitlines()
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line.decode("utf-8")))
        except UnicodeDecodeError:
            problem = problem or f"line {i + 1} is not UTF-8 text"
        except (ValueError, RecursionError):
            if line.strip() and i < len(lines) - 1:
                problem = problem or f"line {i + 1} is not JSON"
    if problem is None:
        bad = next((i for i, r in enumerate(out) if not isinstance(r, dict)), None)
        if bad is not None:
            problem = f"a line holds {_json_type(out[bad])}, not an object"
    return out, problem


_JSONL_CHECKED: dict[Path, tuple[tuple[int, int], str | None]] = {}


def _jsonl_problem(path: Path) -> str | None:
    """What is wrong with a JSONL file, remembered while its size and mtime stay the same
    (pages check every run on every render; outputs.jsonl can be long)."""
    st = path.stat()
    key = (st.st_mtime_ns, st.st_size)
    cached = _JSONL_CHECKED.get(path)
    if cached is None or cached[0] != key:
        cached = _JSONL_CHECKED[path] = (key, _jsonl_lines(path)[1])
    return cached[1]


# Numbers a page computes with; anything else in them makes a record unusable.
_STATE_NUMBERS = ("step", "steps", "loss", "penalty", "overlap", "eta_s")


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

    # --- reading, through one validating layer -------------------------------------------
    # Every file of a run is read here and checked for type and shape; what is wrong is a
    # RunError in words ("run X: state.json holds a list, not an object"), naming the file
    # inside the run folder, never a server path.

    def _file(self, name: str) -> Path | None:
        """`name` inside the run folder, or None if it does not exist; a RunError if it is a
        link leading out of the folder or not a regular file."""
        path = self.dir / name
        if not path.is_symlink() and not path.exists():
            return None
        try:
            inside = path.resolve().is_relative_to(self.dir.resolve())
        except (OSError, RuntimeError):
            inside = False
        if not inside:
            raise RunError(f"run {self.id}: {name} is a link out of the run folder")
        if not path.exists():
            return None
        if not path.is_file():
            raise RunError(f"run {self.id}: {name} is not a file")
        return path

    def read_object(self, name: str) -> dict[str, Any] | None:
        """A JSON file of the run that must hold an object; None if it does not exist."""
        path = self._file(name)
        if path is None:
            return None
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise RunError(f"run {self.id}: {name} is not UTF-8 text (binary or damaged)") from None
        except OSError as e:
            raise RunError(f"run {self.id}: {name} cannot be read ({type(e).__name__})") from None
        if not text.strip():
            raise RunError(f"run {self.id}: {name} is empty")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise RunError(f"run {self.id}: {name} is not valid JSON (truncated or damaged)") from None
        if not isinstance(data, dict):
            raise RunError(f"run {self.id}: {name} holds {_json_type(data)}, not an object")
        return data

    def config(self) -> RunConfig:
        """The run's settings; a RunError saying what is wrong if config.json is missing or damaged."""
        data = self.read_object("config.json")
        if data is None:
            raise RunError(f"run {self.id}: config.json is missing")
        try:
            config = RunConfig.from_dict(data)
            varieties.parse_list(config.dialects)  # an unknown variety is a damaged config
            return config
        except UserError as e:
            raise RunError(f"run {self.id}: config.json: {e}") from None
        except (TypeError, ValueError) as e:
            raise RunError(f"run {self.id}: config.json is unusable ({type(e).__name__})") from None

    def read_state(self) -> dict[str, Any] | None:
        """state.json checked for shape (a `state` text, a `progress` object of numbers), or
        None when there is none; a RunError if it is damaged."""
        state = self.read_object("state.json")
        if state is None:
            return None
        if not isinstance(state.get("state"), str):
            raise RunError(f"run {self.id}: state.json has no state")
        progress = state.get("progress")
        if progress is not None and not isinstance(progress, dict):
            raise RunError(f"run {self.id}: state.json: progress holds {_json_type(progress)}, not an object")
        for key in _STATE_NUMBERS:
            value = (progress or {}).get(key)
            if value is not None and not _is_number(value):
                raise RunError(f"run {self.id}: state.json: progress {key} holds {_json_type(value)}, not a number")
        if state.get("error") is not None and not isinstance(state["error"], str):
            raise RunError(f"run {self.id}: state.json: error holds {_json_type(state['error'])}, not text")
        return state

    def state(self) -> dict[str, Any]:
        """The job state; without state.json, `finished` if the adapter is there; a damaged
        state.json reads as `corrupt` with the reason in `error`."""
        try:
            state = self.read_state()
        except RunError as e:
            return {"state": "corrupt", "error": str(e)}
        return state if state is not None else {"state": "finished" if self.has_adapter() else "unknown"}

    def damage(self) -> str | None:
        """What is wrong with this run folder, in words, or None: the folder itself, config,
        state, metrics, evaluation, outputs, subspace and adapter files, each checked for
        type and shape. A damaged run is never offered as usable."""
        try:
            if self.dir.is_symlink() and not self.dir.resolve().is_relative_to(self.dir.parent.resolve()):
                return f"run {self.id}: the run folder is a link to somewhere else"
            self.config()
            state = self.read_state()
            for name in ("metrics.jsonl", "outputs.jsonl"):
                path = self._file(name)
                problem = _jsonl_problem(path) if path is not None else None
                if problem:
                    return f"run {self.id}: {name}: {problem}"
            self.read_object("eval.json")
            self._file("log.txt")  # shown in the job's error: never a file from elsewhere
            self._check_safetensors("subspace.safetensors")
            if state is None or state.get("state") not in ("queued", "running"):
                self._check_adapter()
        except RunError as e:
            return str(e)
        except OSError as e:
            return f"run {self.id}: the folder cannot be read ({type(e).__name__})"
        return None

    def _check_safetensors(self, name: str) -> None:
        """A safetensors file: an 8-byte header length, a JSON object header, and exactly the
        tensor bytes its header declares (a truncated file has fewer)."""
        path = self._file(name)
        if path is None:
            return
        with open(path, "rb") as f:
            head = f.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            header = f.read(size) if 0 < size <= 100_000_000 else b""
        try:
            entries = json.loads(header.decode("utf-8")) if len(header) == size else None
            ends = [int(v["data_offsets"][1]) for k, v in entries.items() if k != "__metadata__"]
            ok = path.stat().st_size == 8 + size + max(ends, default=0)
        except (AttributeError, UnicodeDecodeError, ValueError, RecursionError, TypeError, KeyError, IndexError):
            ok = False
        if not ok:
            raise RunError(f"run {self.id}: {name} is not a safetensors file (truncated or damaged)")

    def _check_adapter(self) -> None:
        if not self.adapter_dir.is_symlink() and not self.adapter_dir.exists():
            return
        if not self.adapter_dir.resolve().is_relative_to(self.dir.resolve()):
            raise RunError(f"run {self.id}: adapter is a link out of the run folder")
        self.read_object("adapter/adapter_config.json")
        for path in self.adapter_dir.glob("*.safetensors"):
            self._check_safetensors(f"adapter/{path.name}")

    def write_state(self, **updates: Any) -> dict[str, Any]:
        try:
            state = self.read_state() or self.state()
        except RunError:
            state = {}  # a damaged state.json is replaced, not carried along
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
        try:
            path = self._file("log.txt")
        except RunError:
            return ""  # a link out of the run folder is never read
        if path is None:
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def has_adapter(self) -> bool:
        return (self.adapter_dir / "adapter_config.json").exists() and any(
            self.adapter_dir.glob("*.safetensors")
        )

    def eval(self) -> dict[str, Any] | None:
        """eval.json, or None if it is missing or damaged (`damage()` says which)."""
        try:
            return self.read_object("eval.json")
        except RunError:
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
        raise RunError(f"no run named {run_id!r}")
    return run


def list_runs(root: Path | None = None) -> Iterator[Run]:
    """Every run folder, newest first; folders without a readable config are still listed
    (their `config()` raises RunError) so that one corrupted run never hides the others."""
    root = root or paths.runs_dir()
    if not root.is_dir():
        return iter(())
    dirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return iter(Run(d) for d in sorted(dirs, key=lambda d: d.name, reverse=True))
