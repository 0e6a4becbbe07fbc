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


# --- the demo models and the app (AppTest pages, CLI, browser) ------------------------------

@pytest.fixture()
def empty_models(tmp_path, monkeypatch) -> Path:
    """A models root of this test's own, empty: the app as on a fresh install."""
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def demo_pair(tiny_base):
    """The tiny demo (base + baseline + decoupled, evaluated as an experiment) under the
    session's models root, as a compare.RunPair. Built by the first module that asks; later
    modules get the same runs back from the experiment's stage cache."""
    from backend import compare, demo

    status = demo.build_demo(demo.DemoOptions.tiny())
    assert status["state"] == "finished"
    return compare.get_pair(f"{status['runs']['baseline']}+{status['runs']['decoupled']}")


# --- the app in Chromium (tests/browser_support.py) -----------------------------------------

@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright, one per module; skips when either is missing
    (never `playwright install`)."""
    from browser_support import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package); browser tests need it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(browser, demo_pair):
    """The app on the demo models, one server per module; its log is artifacts/streamlit.log."""
    from browser_support import SHOTS, streamlit_server

    from backend import paths

    SHOTS.parent.mkdir(parents=True, exist_ok=True)
    with streamlit_server(paths.models_dir(), log=SHOTS.parent / "streamlit.log") as url:
        yield url


@pytest.fixture()
def page(browser, server):
    """A fresh browser context (no cookies, no session) and page, in English."""
    context = browser.new_context(viewport={"width": 1440, "height": 1100}, locale="en-US")
    p = context.new_page()
    p.set_default_timeout(60_000)
    yield p
    context.close()
