"""Where things live on disk.

All locations derive from two environment variables so that tests, CI and a live demo can
point the app at their own folders without touching code:

- `DD_MODELS_DIR`: root of base models, runs and experiments (default: `<repo>/models`).
- `DD_DATA_ROOTS`: `os.pathsep`-separated folders that corpus paths typed in the app may
  point into (default: `<repo>/data` and `<repo>/../shared/data`; never the models folder,
  whose run files are not corpora). A base model folder may also lie under `base_models_dir()`
  or the shipped bases.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    return Path(os.environ.get("DD_MODELS_DIR", REPO_ROOT / "models")).resolve()


def runs_dir() -> Path:
    return models_dir() / "runs"


def base_models_dir() -> Path:
    return models_dir() / "base"


# Base models committed with the project (models/base/default): found even when
# DD_MODELS_DIR points elsewhere, so tests, CI and a live demo use the shipped weights.
SHIPPED_BASES = REPO_ROOT / "models" / "base"


def base_dir(name: str) -> Path:
    """Where base `name` lives: `DD_MODELS_DIR/base/<name>` once built there, else the copy
    shipped with the project, else the former (where `pretrain` would build it)."""
    own = base_models_dir() / name
    shipped = SHIPPED_BASES / name
    return shipped if not own.is_dir() and shipped.is_dir() else own


def base_names() -> list[str]:
    """Every base model found under DD_MODELS_DIR/base and shipped with the project."""
    names = {d.name for root in (base_models_dir(), SHIPPED_BASES) if root.is_dir()
             for d in root.iterdir() if (d / "config.json").is_file()}
    return sorted(names)


def experiments_dir() -> Path:
    return models_dir() / "experiments"


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout: real corpora that may not be committed."""
    return Path(os.environ.get("DD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def data_roots() -> list[Path]:
    env = os.environ.get("DD_DATA_ROOTS")
    if env:
        return [Path(p).resolve() for p in env.split(os.pathsep) if p]
    return [(REPO_ROOT / "data").resolve(), shared_data_dir()]


def display(path: Path | str) -> str:
    """A folder or file as a message may name it: relative to the project (`data/x`,
    `../shared/data/x`), under the models folder by its setting (`DD_MODELS_DIR/runs`), or
    only its last part; never an absolute path of the server."""
    path = Path(path)
    for root, name in ((models_dir(), "models" if models_dir() == REPO_ROOT / "models" else "DD_MODELS_DIR"),
                       (REPO_ROOT, ""), (REPO_ROOT.parent, "..")):
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        return "/".join(p for p in (name, rel.as_posix()) if p and p != ".") or "."
    return f"…/{path.name}" if path.name else "…"


_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"`:,;()<>\[\]]+/)*[^\s/'\"`:,;()<>\[\]]+")


def redact(text: str) -> str:
    """`text` with every absolute path in it shown as `display` shows it: for messages and
    logs a browser shows (the CLI keeps full paths)."""
    return _ABSOLUTE.sub(lambda m: display(m.group(0)), text)
