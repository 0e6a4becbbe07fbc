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

_TOY_MSA_WORDS = (
    "ذهب الولد إلى السوق في الصباح وأكل الخبز مع أصدقائه ثم عاد إلى البيت كان الطقس جميلا "
    "جدا اليوم أريد أن أشرب القهوة الآن لماذا لا تأتي معنا هذا الكتاب"
).split()
_TOY_DIALECT_WORDS = {
    "CAI": {"أريد": "عايز", "جدا": "قوي", "ذهب": "راح", "الآن": "دلوقتي", "لماذا": "ليه", "هذا": "ده"},
    "BEI": {"أريد": "بدي", "جدا": "كتير", "ذهب": "راح", "الآن": "هلق", "لماذا": "ليش", "هذا": "هيدا"},
    "RIY": {"أريد": "أبغى", "جدا": "مرة", "ذهب": "راح", "الآن": "الحين", "لماذا": "ليش", "هذا": "هذا"},
}


def make_toy_corpus(n: int = 150, seed: int = 0):
    """A small MSA -> {CAI, BEI, RIY} corpus built from word lists (70/15/15 split), for tests that
    need a ParallelCorpus without the data layer. Dialect sides swap a few marker words."""
    import random

    from backend.data.corpus import Pair, ParallelCorpus

    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        words = [rng.choice(_TOY_MSA_WORDS) for _ in range(rng.randint(4, 10))]
        split = "train" if i < n * 0.7 else ("dev" if i < n * 0.85 else "test")
        for dialect, subs in _TOY_DIALECT_WORDS.items():
            target = " ".join(subs.get(w, w) for w in words)
            pairs.append(Pair(f"toy-{i}-{dialect}", " ".join(words), "MSA", target, dialect, split))
    return ParallelCorpus("toy", pairs)


@pytest.fixture(scope="session")
def toy_parallel_corpus():
    return make_toy_corpus()


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    """The "tiny" preset pretrained once per session on the offline corpus, under the session's
    DD_MODELS_DIR. Returns its folder: `tiny_base.name` ("tiny") and `str(tiny_base)` both work
    as a `base` for load_base / RunConfig."""
    from backend.pretrain import pretrain_base

    return pretrain_base(name="tiny", source="offline", preset="tiny", seed=0)
