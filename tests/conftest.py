"""Shared fixtures.

Every test session gets its own models root (`DD_MODELS_DIR`), so tests never read or
write the repo's `models/` folder and never see a developer's runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_MODELS = Path(tempfile.mkdtemp(prefix="dd-test-models-"))
os.environ["DD_MODELS_DIR"] = str(_SESSION_MODELS)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One BLAS thread per process: tests start several processes (app, jobs, browser) on 2 cores,
# and spinning threads slowed the tiny trainings several-fold.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def models_root() -> Path:
    return _SESSION_MODELS


@pytest.fixture(scope="session")
def dial2msa_dir() -> Path:
    d = SHARED_DATA / "dial2msa"
    if not d.is_dir():
        pytest.skip(f"Dial2MSA not found at {d} (it is read from ../shared, never committed)")
    return d


@pytest.fixture(scope="session")
def madar_english_tsv() -> Path:
    f = SHARED_DATA / "madar-format" / "MADAR.corpus.English.tsv"
    if not f.is_file():
        pytest.skip(f"MADAR English TSV not found at {f} (read from ../shared, never committed)")
    return f


# --- model fixtures (backend.modeling / backend.pretrain) ---------------------------------

@pytest.fixture(scope="session")
def toy_parallel_corpus():
    """A small slice of the offline corpus: 150 frames, MSA -> {CAI, BEI, RIY}, for tests that
    need a quick ParallelCorpus with all three splits."""
    from backend.data import load_corpus

    return load_corpus("offline:size=150", dialects="CAI,BEI,RIY")


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    """The "tiny" preset pretrained once per session on the offline corpus, under the session's
    DD_MODELS_DIR. Returns its folder: `tiny_base.name` ("tiny") and `str(tiny_base)` both work
    as a `base` for load_base / RunConfig."""
    from backend.pretrain import pretrain_base

    return pretrain_base(name="tiny", source="offline", preset="tiny", seed=0)
