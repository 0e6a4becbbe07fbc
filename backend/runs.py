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
from backend.errors import LimitError, RunError, UserError
from backend.prompts import check_format

PROBE_STATE = "decoupling.safetensors"  # the probe's state inside each training checkpoint

METHODS = ("baseline", "decoupled")
DEFAULT_DIALECTS = list(varieties.CITY_CODES)  # every city of the offline corpus
# The settings in which the two runs of a (baseline, decoupled) pair may differ: the method,
# the name and everything that only acts through the penalty, which is off at lambda = 0, so
# they leave the baseline's weights unchanged. Experiments share one baseline across a sweep
# of these, and Compare and Overlap pair runs by everything else (`RunConfig.pair_key`). The
# baseline still runs the probe, so `layers` and the probe settings do change what its
# overlap figures measure; `backend.compare.pair_curves` charts only what both runs measured.
PAIR_FREE_SETTINGS = frozenset({"method", "name", "lam", "lam_warmup", "layers", "probe_every", "probe_rank",
                                "probe_steps", "probe_batch", "subspace"})


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
    "str | None": (lambda v: v is None or isinstance(v, str), "text or null"),
    "int": (_is_int, "a whole number"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int | None": (lambda v: v is None or _is_int(v), "a whole number or null"),
    "list[str]": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of texts"),
    "list[str] | None": (lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
                         "a list of texts or null"),
    "list[int] | None": (lambda v: v is None or (isinstance(v, list) and all(_is_int(x) for x in v)),
                         "a list of whole numbers or null"),
}

DTYPES = ("auto", "bf16", "fp16", "fp32")
QUANTIZE = ("4bit", "8bit")
SUBSPACES = ("probe", "pca", "both")


def setting(default: Any = None, *, help: str, label: str = "", choices: tuple[str, ...] | None = None,
            low: float | None = None, high: float | None = None, required: bool = False,
            factory: Any = None) -> Any:
    """A RunConfig field with its help text, label and allowed values. The CLI's flags, the
    Train page's form and the validation all read this one declaration."""
    meta = {"help": help, "label": label, "choices": choices, "low": low, "high": high, "required": required}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """Everything that defines a fine-tuning run. The two runs of a pair differ only in
    PAIR_FREE_SETTINGS (the method and what acts through the penalty).

    Each field is declared once, with its default, its allowed values and a help text: the
    CLI (`python -m backend train --<field-name>`), the Train page and the experiments'
    `train:` sections are derived from it, and constructing one validates every field."""

    method: str = setting("decoupled", choices=METHODS, label="Method",
                          help="baseline: lambda 0 (the probe only observes); decoupled: with the penalty")
    source: str = setting("offline", required=True, label="Data source",
                          help="corpus spec: offline[:...], madar:DIR, csv:PATH, hub:ID")
    dialects: list[str] = setting(factory=lambda: list(DEFAULT_DIALECTS), label="Dialects",
                                  help="the varieties the adapter learns to write, codes or names")
    base: str = setting("default", required=True, label="Base model",
                        help="'default' (python -m backend pretrain), a folder or a hub id")
    # Fine-tuning defaults chosen on the dev split (experiments/choose_finetune_defaults.py):
    # LoRA on attention and MLP, rank 32, 1000 steps; the README lists the candidates.
    steps: int = setting(1000, low=1, label="Steps",
                         help="optimizer steps per run; more steps, better adapters, longer wait")
    batch_size: int = setting(16, low=1, label="Batch size", help="training pairs per step")
    learning_rate: float = setting(2e-3, low=1e-7, high=1.0, label="Learning rate",
                                   help="step size of the optimizer for the adapter")
    lam: float = setting(1.0, low=0.0, label="λ (penalty weight)",
                         help="weight of the decoupling penalty (lambda); forced to 0 for the baseline")
    lam_warmup: int = setting(30, low=0, label="λ warm-up steps",
                              help="steps over which lambda ramps linearly from 0")
    layers: list[int] | None = setting(None, low=1, label="Layers",
                                       help="hidden-state layers the penalty acts on, e.g. 3,4,5 "
                                            "(none: the middle-to-upper layers)")
    probe_every: int = setting(10, low=1, label="Probe every",
                               help="steps between updates of the MSA-subspace estimate")
    probe_rank: int = setting(8, low=1, label="Probe rank",
                              help="k_max: the MSA subspace has at most this many directions")
    probe_steps: int = setting(20, low=1, label="Probe steps", help="ELBO steps per probe update")
    probe_batch: int = setting(32, low=1, label="Probe batch", help="held-out MSA sentences per probe update")
    subspace: str = setting("probe", choices=SUBSPACES, label="Subspace",
                            help="how the MSA subspace is estimated: the variational probe, PCA, or both")
    lora_rank: int = setting(32, low=1, label="LoRA rank",
                             help="size of the adapter: higher learns more and costs a little more")
    lora_alpha: int | None = setting(None, low=1, label="LoRA alpha",
                                     help="LoRA scaling numerator (none: 2 x the LoRA rank)")
    lora_dropout: float = setting(0.05, low=0.0, high=0.9, label="LoRA dropout", help="dropout inside the adapter")
    lora_targets: list[str] | None = setting(None, label="LoRA targets",
                                             help="module names the adapter wraps, comma-separated (none: "
                                                  "every linear layer of attention and MLP, found per model)")
    max_length: int = setting(96, low=8, label="Max length", help="tokens per example (prompt and target)")
    max_train_pairs: int | None = setting(None, low=1, label="Max training pairs",
                                          help="use at most this many training pairs (none: all)")
    include_msa: bool = setting(True, label="Include MSA targets",
                                help="also train on MSA targets (the trade-off row); never penalised")
    seed: int = setting(0, low=0, label="Seed", help="same seed, same data order: the two runs of a pair share it")
    name: str = setting("", label="Name", help="a short label that appears in the run's folder name")
    prompt_format: str = setting("auto", label="Prompt format",
                                 help="auto (chat when the tokenizer has a chat template, else tags), tags, "
                                      "chat, or a template with {source}, {source_variety}, {target_variety}")
    save_every: int = setting(100, low=1, label="Save every", help="steps between checkpoints, for resume")
    dtype: str = setting("auto", choices=DTYPES, label="Weights dtype",
                         help="auto: bf16 on a GPU that has it, fp32 on a CPU")
    quantize: str | None = setting(None, choices=QUANTIZE, label="Quantize",
                                   help="load the base in 4 or 8 bits (QLoRA, bitsandbytes; GPU only)")
    gradient_checkpointing: bool = setting(False, label="Gradient checkpointing",
                                           help="recompute activations in the backward pass: less memory, "
                                                "more compute per step")

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))
        self.dialects = varieties.parse_list(self.dialects)
        check_format(self.prompt_format)
        if not self.dialects:
            raise RunError("dialects: choose at least one dialect")
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_rank
        if self.method == "baseline":
            self.lam = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pair_key(self) -> tuple:
        """What a baseline and a decoupled run must share to form a pair: every setting but
        PAIR_FREE_SETTINGS, with dialects as a set (CAI,BEI == BEI,CAI)."""
        data = self.to_dict()
        data["dialects"] = sorted(varieties.parse_list(self.dialects))
        return tuple(sorted((k, repr(v)) for k, v in data.items() if k not in PAIR_FREE_SETTINGS))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise RunError(f"run settings must be an object, not {_json_type(data)}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise RunError(f"unknown run settings: {', '.join(unknown)}")
        return cls(**data)


def _checked(f: Any, value: Any) -> Any:
    """`value` for field `f`, checked against its type, choices and range: a RunError (or a
    LimitError for a number out of range) that names the field otherwise."""
    if isinstance(value, tuple):
        value = list(value)
    check, words = _SETTING_TYPES[f.type]
    if not check(value):
        raise RunError(f"the setting {f.name} should be {words}, not {_json_type(value)}")
    meta = f.metadata
    if value is None:
        return value
    if meta.get("choices") and value not in meta["choices"]:
        raise RunError(f"unknown {f.name} {value!r}; choose one of {', '.join(meta['choices'])}")
    if meta.get("required") and not value.strip():
        raise RunError(f"{f.name} is empty; give {meta['help']}")
    if f.type == "float":
        value = float(value)
    numbers = value if f.type.startswith("list[int]") else [value] if _is_number(value) else []
    for x in numbers:
        if meta.get("low") is not None and x < meta["low"]:
            raise LimitError(f"{f.name} must be at least {meta['low']:g}, not {x:g}")
        if meta.get("high") is not None and x > meta["high"]:
            raise LimitError(f"{f.name} must be at most {meta['high']:g}, not {x:g}")
    if f.type.startswith("list[int]"):
        value = sorted(set(value)) or None  # layers: each once, in order; [] means the default
    return value


def setting_fields() -> tuple[Any, ...]:
    """RunConfig's fields, in declaration order: what the CLI and the Train form iterate."""
    return fields(RunConfig)


def parse_setting(name: str, text: str) -> Any:
    """A setting typed as text (a CLI flag, a form's text box) -> its value, before
    RunConfig's own checks: the one parser of layer and target lists."""
    kind = {f.name: f.type for f in fields(RunConfig)}[name]
    text = text.strip()
    optional = kind.endswith("| None")
    if not text and optional:
        return None
    if kind.startswith("list[int]"):
        try:
            return [int(x) for x in text.replace(" ", ",").split(",") if x]
        except ValueError:
            raise RunError(f"{name} must be numbers separated by commas, like 2,3 (got {text!r})") from None
    if kind.startswith("list[str]"):
        return [x.strip() for x in text.split(",") if x.strip()]
    if kind == "bool":
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
        raise RunError(f"{name} must be true or false (got {text!r})")
    if kind.startswith(("int", "float")):
        try:
            return int(text) if kind.startswith("int") else float(text)
        except ValueError:
            words = "a whole number" if kind.startswith("int") else "a number"
            raise RunError(f"{name} must be {words} (got {text!r})") from None
    if optional and text.lower() in ("none", "null"):
        return None
    return text


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


def read_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a text log ("" if there is none yet)."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


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

# Which state may follow which; None stands for no state.json yet, `unknown` or `corrupt`.
# A finished run may train again (an experiment retrains a damaged one); it is never queued.
_NEXT = {
    None: {"queued", "running"},
    "queued": {"running", "cancelled", "failed"},
    "running": {"running", "finished", "failed", "cancelled"},
    "finished": {"running"},
    "failed": {"queued", "running"},
    "cancelled": {"queued", "running"},
}


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
        """The job state, the one reading every caller uses: without state.json, `finished`
        if the adapter is there, else `unknown`; a damaged state.json (or an unreadable
        folder) reads as `corrupt` with the reason in `error`."""
        try:
            state = self.read_state()
        except RunError as e:
            return {"state": "corrupt", "error": str(e)}
        except OSError as e:
            return {"state": "corrupt", "error": f"run {self.id}: state.json cannot be read ({type(e).__name__})"}
        return state if state is not None else {"state": "finished" if self.has_adapter() else "unknown"}

    def is_complete(self) -> bool:
        """A finished run with a complete adapter and no damaged file: the only kind a
        comparison, an experiment's reuse or Compare may use."""
        return self.state().get("state") == "finished" and self.has_adapter() and self.damage() is None

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

    def write_state(self, drop: tuple[str, ...] = (), **updates: Any) -> dict[str, Any]:
        """The one writer of state.json: merge `updates` into the current state (less the
        keys in `drop`). The named transitions below are what code calls; tests use this to
        set a state up."""
        try:
            state = self.read_state() or self.state()
        except (RunError, OSError):
            state = {}  # a damaged state.json is replaced, not carried along
        state = {k: v for k, v in state.items() if k not in drop}
        state.update(updates)
        state["updated"] = time.time()
        write_json_atomic(self.state_path, state)
        return state

    # --- state transitions: queued -> running -> finished | failed | cancelled ------------

    def _move(self, to: str, drop: tuple[str, ...] = (), **updates: Any) -> dict[str, Any]:
        """Write state `to` if the current state may go there, else a RunError."""
        current = self.state().get("state")
        if to not in _NEXT.get(current, _NEXT[None]):
            raise RunError(f"run {self.id} is {current}; it cannot become {to}")
        return self.write_state(drop, state=to, **updates)

    def mark_queued(self, resume: bool = False, **extra: Any) -> dict[str, Any]:
        """Queue the run (new, or again after failed/cancelled): the state starts afresh."""
        current = self.state().get("state")
        if "queued" not in _NEXT.get(current, _NEXT[None]):
            raise RunError(f"run {self.id} is {current}; it cannot be queued")
        now = time.time()
        state = {"state": "queued", "queued_at": now, "updated": now, "resume": resume, **extra}
        write_json_atomic(self.state_path, state)
        return state

    def mark_running(self, pid: int | None = None, **extra: Any) -> dict[str, Any]:
        """The training process `pid` (default: this one) has started: a fresh heartbeat, and
        the previous attempt's error, progress and end time dropped."""
        now = time.time()
        return self._move("running", drop=("error", "progress", "finished"), pid=os.getpid() if pid is None else pid,
                          started=now, heartbeat=now, **extra)

    def beat(self, progress: dict[str, Any] | None = None) -> dict[str, Any]:
        """A heartbeat from the running process, with its progress (step, steps, loss...)."""
        current = self.state().get("state")
        if current in ("queued", "finished", "failed", "cancelled"):
            raise RunError(f"run {self.id} is {current}; only a running run sends a heartbeat")
        extra = {} if progress is None else {"progress": progress}
        return self.write_state(state="running", heartbeat=time.time(), **extra)

    def mark_finished(self, **extra: Any) -> dict[str, Any]:
        now = time.time()
        return self._move("finished", heartbeat=now, finished=now, **extra)

    def mark_failed(self, error: str, **extra: Any) -> dict[str, Any]:
        now = time.time()
        return self._move("failed", error=error, finished=now, **extra)

    def mark_cancelled(self, **extra: Any) -> dict[str, Any]:
        now = time.time()
        return self._move("cancelled", finished=now, **extra)

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
        return "" if path is None else read_tail(path, lines)

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
