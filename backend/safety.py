"""What a user may type: caps, paths, hub ids, and whether remote code may run.

The app may be exposed to people who are not its operator (a live demo), so anything typed
in a page is checked here before it reaches the file system, the hub or a training job:

- Caps (text length in Compare, steps, batch, sequence length and dataset size in Train,
  queue length) come from environment variables so an operator can raise or lower them
  without code; every refusal is a `LimitError` whose one line names the cap and the
  variable that changes it.
- Paths resolve under `backend.paths.data_roots()` only: `..` that leaves the roots, an
  absolute path elsewhere, or a symlink pointing out is a `PathError`.
- Hub ids are checked for shape before any download.
- Remote code runs only when the operator sets `DD_TRUST_REMOTE_CODE=1`.

This module imports nothing heavy: pages call it on every keystroke.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from backend import paths
from backend.data.sources import Spec
from backend.errors import CorpusError, LimitError, PathError
from backend.names import is_hub_id as is_hub_id  # re-exported: callers that check ids with the caps
from backend.names import is_local_name, validate_hub_id

if TYPE_CHECKING:
    from backend.runs import RunConfig


@dataclass(frozen=True)
class Limit:
    env: str
    default: int
    what: str  # how the refusal names the thing capped


LIMITS: dict[str, Limit] = {
    "text_chars": Limit("DD_MAX_TEXT_CHARS", 500, "characters of input text"),
    "steps": Limit("DD_MAX_STEPS", 5000, "training steps"),
    "train_pairs": Limit("DD_MAX_TRAIN_PAIRS", 200_000, "training pairs"),
    "batch_size": Limit("DD_MAX_BATCH_SIZE", 128, "examples per batch"),
    "max_length": Limit("DD_MAX_SEQ_LENGTH", 512, "tokens per example"),
    "queue": Limit("DD_MAX_QUEUE", 8, "queued jobs"),
}
MAX_TEXT_CHARS = LIMITS["text_chars"].default
MAX_STEPS = LIMITS["steps"].default
MAX_TRAIN_PAIRS = LIMITS["train_pairs"].default
MAX_QUEUE = LIMITS["queue"].default


def limit(name: str) -> int:
    """The cap in force now: the environment variable if set, else the default."""
    spec = LIMITS[name]
    raw = os.environ.get(spec.env, "").strip()
    if not raw:
        return spec.default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise LimitError(f"{spec.env}={raw!r} is not a positive whole number; fix or unset it")
    return value


def check_limit(name: str, value: int, label: str | None = None) -> int:
    """`value` if 1 <= value <= the cap, else a LimitError that says how to change the cap."""
    spec, cap = LIMITS[name], limit(name)
    label = label or spec.what
    if value < 1:
        raise LimitError(f"{label} must be at least 1 (got {value})")
    if value > cap:
        raise LimitError(f"{value} {label} is over the cap of {cap}; lower it, or set {spec.env} to raise the cap")
    return value


# --- text typed into Compare and `generate` -------------------------------------------------

_KEEP_CONTROLS = {"\n", "\t"}


def check_text(text: object, label: str = "input text") -> str:
    """The text, cleaned and stripped, or a LimitError (empty, whitespace only, over the cap).

    Control characters become spaces and lone surrogates (which cannot be encoded) become
    U+FFFD, so a tokenizer never sees either.
    """
    if not isinstance(text, str):
        raise LimitError(f"{label} must be text, not {type(text).__name__}")
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    text = "".join(" " if unicodedata.category(c) == "Cc" and c not in _KEEP_CONTROLS else c for c in text)
    text = text.strip()
    if not text:
        raise LimitError(f"{label} is empty: type a sentence first")
    cap = limit("text_chars")
    if len(text) > cap:
        raise LimitError(
            f"{label} is {len(text)} characters, over the cap of {cap}; shorten it, "
            f"or set {LIMITS['text_chars'].env} to raise the cap"
        )
    return text


# --- paths ----------------------------------------------------------------------------------

def _roots(roots: list[Path] | None) -> list[Path]:
    chosen = roots if roots is not None else paths.data_roots()
    return [Path(r).expanduser().resolve() for r in chosen]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def resolve_user_path(text: str, roots: list[Path] | None = None, must_exist: bool = True) -> Path:
    """A path a user typed, resolved (symlinks followed) and proven to lie under a data root.

    A relative path is tried against each root, then against the working directory (for
    the CLI); the first that exists wins. Whatever it resolves to must lie under a root.
    """
    if not isinstance(text, str) or not text.strip():
        raise PathError("no path given")
    text = text.strip()
    if "\x00" in text:
        raise PathError("a path cannot contain a NUL character")
    allowed = _roots(roots)
    where = ", ".join(paths.display(r) for r in allowed) or "(none)"
    inside: list[Path] = []
    try:
        typed = Path(text).expanduser()
        candidates = [typed] if typed.is_absolute() else [r / typed for r in allowed] + [Path.cwd() / typed]
        resolved = [c.resolve() for c in candidates]
    except (OSError, RuntimeError, ValueError) as e:  # ~unknown-user, symlink loops, over-long names
        raise PathError(f"cannot resolve path {text[:200]!r} ({type(e).__name__})") from None
    for path in resolved:
        if _inside(path, allowed):
            inside.append(path)
            try:
                if not must_exist or path.exists():
                    return path
            except OSError:
                continue
    if not inside:
        raise PathError(
            f"{text!r} is outside the allowed data folders ({where}); "
            "set DD_DATA_ROOTS to allow another folder"
        )
    raise PathError(f"no file or folder {text!r} under the allowed data folders ({where})")


def resolve_source_spec(spec: str, roots: list[Path] | None = None) -> str:
    """A corpus spec (see backend.data.sources) with every PATH part resolved under the roots.

    `offline...` is left alone, `hub:ID` gets its id checked, and `madar:DIR` /
    `csv:PATH[,PATH...]` get each path replaced by its resolved absolute form (options are
    kept), so the job that later reads it cannot be sent elsewhere.
    """
    parsed = Spec.parse(spec)  # CorpusError for anything that is not a spec
    if parsed.kind == "offline":
        return str(parsed)
    if parsed.kind == "hub":
        return str(parsed.with_target(validate_hub_id(parsed.target, CorpusError)))
    resolved = ",".join(str(resolve_user_path(part, roots)) for part in parsed.paths)
    return str(parsed.with_target(resolved))


# --- hub ids and models ----------------------------------------------------------------------
# The name rules live in backend.names (below this module and the data loaders).


def resolve_base_spec(base: str, roots: list[Path] | None = None) -> str:
    """A base model as typed: 'default' or a name under models/base stay as they are, a
    folder must lie under the data roots (returned absolute), anything else must be a hub id."""
    text = base.strip() if isinstance(base, str) else ""
    if not text:
        raise PathError("no base model given; use 'default', a folder, or a hub id owner/name")
    if is_local_name(text):
        return text
    # a base folder may be a corpus root's or one of the base models' (never a run's files)
    roots = _roots(roots) + [paths.base_models_dir(), paths.SHIPPED_BASES]
    looks_like_path = text.startswith(("/", ".", "~")) or text.count("/") != 1 or "\\" in text
    if looks_like_path:
        return str(resolve_user_path(text, roots))
    try:
        return str(resolve_user_path(text, roots))
    except PathError:
        return validate_hub_id(text)


def check_base_and_layers(base: str, layers: list[int] | None, roots: list[Path] | None = None) -> str:
    """What the Train form can know before queueing: a base named like a local model exists
    (under models/base or shipped), a folder holds a model, and the chosen layers exist in
    it. A hub id cannot be checked offline and passes. Returns the resolved base spec."""
    spec = resolve_base_spec(base, roots)
    if is_local_name(spec):
        folder = paths.base_dir(spec)
        if not (folder / "config.json").is_file() and spec != "default":  # default is built on demand
            known = ", ".join(paths.base_names()) or "none yet"
            raise PathError(f"there is no base model named {spec!r} (built: {known}); "
                            f"build it with `python -m backend pretrain --name {spec}`, or type a hub id owner/name")
    elif Path(spec).is_absolute():
        folder = Path(spec)
        if not (folder / "config.json").is_file():
            raise PathError(f"{paths.display(folder)} holds no model (no config.json)")
    else:
        return spec  # a hub id
    if layers:
        try:
            n = int(json.loads((folder / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"])
        except (OSError, ValueError, KeyError, TypeError):
            return spec  # unknown depth: the training checks it
        over = [layer for layer in layers if layer > n]
        if over:
            raise LimitError(f"the base {base!r} has {n} layers (1 to {n}); layer {', '.join(map(str, over))} "
                             "does not exist")
    return spec


def trust_remote_code() -> bool:
    """Remote code from the hub runs only when the operator opts in with DD_TRUST_REMOTE_CODE=1."""
    return os.environ.get("DD_TRUST_REMOTE_CODE") == "1"


# --- a whole training request ----------------------------------------------------------------

def check_run_config(config: RunConfig, roots: list[Path] | None = None) -> RunConfig:
    """A copy of `config` within the caps, with its corpus and base paths resolved."""
    check_limit("steps", int(config.steps))
    check_limit("batch_size", int(config.batch_size), "examples per batch (batch size)")
    check_limit("max_length", int(config.max_length), "tokens per example (max length)")
    if config.max_train_pairs is not None:
        check_limit("train_pairs", int(config.max_train_pairs), "training pairs (max_train_pairs)")
    return replace(config, source=resolve_source_spec(config.source, roots),
                   base=resolve_base_spec(config.base, roots))


def check_dataset_size(config: RunConfig, train_pairs: int | None) -> None:
    """Without a `max_train_pairs`, the corpus's training pairs (when known) must fit the cap."""
    cap = limit("train_pairs")
    if config.max_train_pairs is None and train_pairs is not None and train_pairs > cap:
        raise LimitError(
            f"the corpus offers {train_pairs} training pairs, over the cap of {cap}; set max_train_pairs "
            f"to {cap} or fewer, or set {LIMITS['train_pairs'].env} to raise the cap"
        )


def check_queue(queued: int) -> None:
    cap = limit("queue")
    if queued >= cap:
        raise LimitError(
            f"{queued} jobs are already waiting, the cap is {cap}; wait or cancel one, "
            f"or set {LIMITS['queue'].env} to raise the cap"
        )
