"""Blind ratings: a linguist's own judgement of baseline against decoupled, kept in SQLite.

Automatic scores say how close an output is to one reference; whether it reads as the
target dialect is what linguists trust their own judgement for. A rater sees a source and
the two outputs as A and B (which is which drawn at random per item and never shown), and
answers two questions: which is more <target variety>, which is closer in meaning (A, B or
tie). Each answer is one row, written at once, so a reload or a second rater loses nothing:

    models/ratings.sqlite3   table `ratings`, WAL mode (readers never block the writer, and
                             two writers wait for each other through busy_timeout)

A rater who answers an item again adds a row; the summaries use each rater's latest answer
per item. `summary` turns the answers into preference rates with an exact two-sided sign
test (ties excluded, and counted), and the agreement of raters who rated the same item.
"""

from __future__ import annotations

import csv
import io
import math
import random
import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend import paths
from backend.errors import UserError

SYSTEMS = ("baseline", "decoupled")
ANSWERS = ("A", "B", "tie")
QUESTIONS = {"dialect": "Which is more {target}?", "meaning": "Which is closer in meaning to the source?"}
MIN_FOR_RESULTS = 20  # answers before the Results page shows rates: fewer say nothing
MAX_NAME = 60
COLUMNS = ("id", "time", "rater", "pair", "baseline_run", "decoupled_run", "sentence_id", "variety",
           "shown_as_a", "dialect_answer", "meaning_answer", "dialect_preferred", "meaning_preferred")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    rater TEXT NOT NULL,
    pair TEXT NOT NULL,
    sentence_id TEXT NOT NULL,
    variety TEXT NOT NULL,
    shown_as_a TEXT NOT NULL CHECK (shown_as_a IN ('baseline', 'decoupled')),
    dialect_answer TEXT NOT NULL CHECK (dialect_answer IN ('A', 'B', 'tie')),
    meaning_answer TEXT NOT NULL CHECK (meaning_answer IN ('A', 'B', 'tie'))
);
CREATE INDEX IF NOT EXISTS ratings_item ON ratings (pair, sentence_id, rater);
"""


def db_path() -> Path:
    return paths.models_dir() / "ratings.sqlite3"


def connect(path: Path | None = None) -> sqlite3.Connection:
    """A connection in WAL mode with the table in place; a busy database is waited for (30 s)
    rather than failing, which is what makes two raters at once safe."""
    path = path or db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(_SCHEMA)
    return conn


def check_rater(name: str) -> str:
    """A rater's name as stored: trimmed, one line, at most MAX_NAME characters."""
    name = " ".join(str(name or "").split())
    if not name:
        raise UserError("type your name (or initials) first: every answer is stored with it")
    if len(name) > MAX_NAME:
        raise UserError(f"a rater name is at most {MAX_NAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Co", "Cn") for c in name):
        raise UserError("a rater name may not hold control or invisible characters")
    return name


def _check(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise UserError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def draw_side(rng: random.Random | None = None) -> str:
    """Which system is shown as A: drawn afresh for every item shown (SystemRandom unless a
    seeded generator is passed), so the rater cannot learn a position."""
    return (rng or random.SystemRandom()).choice(SYSTEMS)


def preferred(answer: str, shown_as_a: str) -> str:
    """An answer (A, B, tie) as the system it prefers: baseline, decoupled or tie."""
    if answer == "tie":
        return "tie"
    other = SYSTEMS[1 - SYSTEMS.index(shown_as_a)]
    return shown_as_a if answer == "A" else other


def add(rater: str, pair: str, sentence_id: str, variety: str, shown_as_a: str, dialect_answer: str,
        meaning_answer: str, path: Path | None = None) -> int:
    """Store one answered item at once (its own transaction); returns the row id."""
    rater = check_rater(rater)
    _check(shown_as_a, SYSTEMS, "the system shown as A")
    _check(dialect_answer, ANSWERS, "the dialect answer")
    _check(meaning_answer, ANSWERS, "the meaning answer")
    if not pair or not sentence_id:
        raise UserError("a rating needs a run pair and a sentence id")
    conn = connect(path)
    try:
        cur = conn.execute(
            "INSERT INTO ratings (created, rater, pair, sentence_id, variety, shown_as_a, dialect_answer, "
            "meaning_answer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), rater, str(pair), str(sentence_id), str(variety), shown_as_a, dialect_answer,
             meaning_answer))
        return int(cur.lastrowid)
    finally:
        conn.close()


@dataclass(frozen=True)
class Rating:
    id: int
    created: float
    rater: str
    pair: str
    sentence_id: str
    variety: str
    shown_as_a: str
    dialect_answer: str
    meaning_answer: str

    def prefers(self, question: str) -> str:
        return preferred(self.dialect_answer if question == "dialect" else self.meaning_answer, self.shown_as_a)


def all_ratings(pair: str | None = None, path: Path | None = None) -> list[Rating]:
    """Every stored answer (oldest first), of one run pair or of all. No database yet: []."""
    path = path or db_path()
    if not path.is_file():
        return []
    conn = connect(path)
    try:
        sql = "SELECT id, created, rater, pair, sentence_id, variety, shown_as_a, dialect_answer, meaning_answer " \
              "FROM ratings"
        rows = conn.execute(sql + (" WHERE pair = ? ORDER BY id" if pair else " ORDER BY id"),
                            (pair,) if pair else ()).fetchall()
    finally:
        conn.close()
    return [Rating(*row) for row in rows]


def latest(ratings: Iterable[Rating]) -> list[Rating]:
    """Each rater's latest answer per (pair, sentence): a changed mind replaces the first answer."""
    last: dict[tuple[str, str, str, str], Rating] = {}
    for r in sorted(ratings, key=lambda r: r.id):
        last[(r.pair, r.variety, r.sentence_id, r.rater)] = r
    return list(last.values())


def rated_by(rater: str, pair: str, path: Path | None = None) -> set[tuple[str, str]]:
    """The (variety, sentence id) items `rater` has answered for `pair`."""
    rater = check_rater(rater)
    return {(r.variety, r.sentence_id) for r in all_ratings(pair, path) if r.rater == rater}


# --- statistics --------------------------------------------------------------------------------

def sign_test(wins: int, losses: int) -> float | None:
    """Exact two-sided sign (binomial, p = 1/2) test of `wins` against `losses`, ties left out
    before calling. None when there is nothing to test."""
    n = wins + losses
    if n == 0:
        return None
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def preference(ratings: Sequence[Rating], question: str) -> dict[str, Any]:
    """How often the decoupled output is preferred on `question` (dialect or meaning)."""
    prefs = [r.prefers(question) for r in ratings]
    dec, base, ties = prefs.count("decoupled"), prefs.count("baseline"), prefs.count("tie")
    decided = dec + base
    return {"question": question, "n": len(prefs), "decoupled": dec, "baseline": base, "ties": ties,
            "decoupled_rate": dec / decided if decided else None, "p_value": sign_test(dec, base),
            "test": "exact two-sided sign test (binomial, p = 1/2), ties excluded"}


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when undefined (no items,
    or both always gave the one same label)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    labels = set(a) | set(b)
    expected = sum((a.count(c) / n) * (b.count(c) / n) for c in labels)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


def agreement(ratings: Sequence[Rating], question: str) -> dict[str, Any]:
    """Agreement of raters who answered the same item: every pair of such raters' answers
    (as preferred system) pooled; percent agreement and Cohen's kappa over those pairs."""
    by_item: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in ratings:
        by_item.setdefault((r.pair, r.variety, r.sentence_id), {})[r.rater] = r.prefers(question)
    a: list[str] = []
    b: list[str] = []
    items = 0
    for answers in by_item.values():
        raters = sorted(answers)
        if len(raters) < 2:
            continue
        items += 1
        for i in range(len(raters)):
            for j in range(i + 1, len(raters)):
                a.append(answers[raters[i]])
                b.append(answers[raters[j]])
    return {"question": question, "items": items, "pairs": len(a),
            "percent": sum(x == y for x, y in zip(a, b)) / len(a) if a else None,
            "kappa": cohen_kappa(a, b)}


def summary(pair: str | None = None, path: Path | None = None) -> dict[str, Any]:
    """Preference rates, sign-test p-values and agreement over each rater's latest answers."""
    stored = all_ratings(pair, path)
    current = latest(stored)
    return {"pair": pair, "answers": len(stored), "items": len({(r.pair, r.variety, r.sentence_id) for r in current}),
            "raters": sorted({r.rater for r in current}),
            "preference": {q: preference(current, q) for q in QUESTIONS},
            "agreement": {q: agreement(current, q) for q in QUESTIONS}}


def pairs_rated(path: Path | None = None) -> dict[str, int]:
    """Run pair -> number of stored answers, most answered first."""
    counts: dict[str, int] = {}
    for r in all_ratings(None, path):
        counts[r.pair] = counts.get(r.pair, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# --- export ------------------------------------------------------------------------------------

def export_rows(pair: str | None = None, path: Path | None = None) -> list[dict[str, Any]]:
    """Every stored answer as a flat record (COLUMNS), resolved to the system it prefers."""
    out = []
    for r in all_ratings(pair, path):
        baseline_run, _, decoupled_run = r.pair.partition("+")
        out.append({"id": r.id, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.created)),
                    "rater": _cell(r.rater), "pair": r.pair, "baseline_run": baseline_run, "decoupled_run": decoupled_run,
                    "sentence_id": r.sentence_id, "variety": r.variety, "shown_as_a": r.shown_as_a,
                    "dialect_answer": r.dialect_answer, "meaning_answer": r.meaning_answer,
                    "dialect_preferred": r.prefers("dialect"), "meaning_preferred": r.prefers("meaning")})
    return out


def _cell(text: str) -> str:
    """A typed name as a spreadsheet cell: one starting like a formula is quoted."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def export_csv(pair: str | None = None, path: Path | None = None) -> str:
    """The answers as CSV text (header COLUMNS), for a spreadsheet or R."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(export_rows(pair, path))
    return buf.getvalue()
