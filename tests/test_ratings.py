"""backend.ratings: the SQLite store of blind ratings (two writers at once), its statistics
(exact sign test, Cohen's kappa) and the CSV export; and `python -m backend ratings`."""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import random
import sqlite3
import sys
import types

import pytest

from backend import ratings
from backend.__main__ import main as cli
from backend.errors import UserError

PAIR = "20260101-000000-baseline-x+20260101-000001-decoupled-x"


def _writer(path: str, rater: str, n: int) -> None:
    """One rater's process: n answers, each its own transaction."""
    from pathlib import Path

    for i in range(n):
        ratings.add(rater, PAIR, f"s{i}", "CAI", "baseline" if i % 2 else "decoupled", "A", "tie", path=Path(path))


def test_two_processes_writing_at_once_lose_nothing(tmp_path, monkeypatch):
    db = tmp_path / "ratings.sqlite3"
    ratings.connect(db).close()
    # An AppTest run earlier in this process leaves app.py as __main__, which "spawn" would run
    # again in each child (and fail once runs exist): the children need no __main__ of ours.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(db), name, 150)) for name in ("rater one", "rater two")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    stored = ratings.all_ratings(path=db)
    assert len(stored) == 300 and len({r.id for r in stored}) == 300
    assert {r.rater for r in stored} == {"rater one", "rater two"}
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_sign_test_is_exact():
    assert ratings.sign_test(5, 0) == pytest.approx(2 / 32)
    assert ratings.sign_test(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert ratings.sign_test(3, 3) == 1.0
    assert ratings.sign_test(0, 0) is None
    n, k = 30, 9  # against a sum written out independently
    assert ratings.sign_test(n - k, k) == pytest.approx(2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def test_cohen_kappa_known_values():
    assert ratings.cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == pytest.approx(1.0)
    # observed 0.5, expected 0.5: no better than chance
    assert ratings.cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == pytest.approx(0.0)
    # textbook 2x2: 20/5/10/15 -> po 0.7, pe 0.5, kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert ratings.cohen_kappa(a, b) == pytest.approx(0.4)
    assert ratings.cohen_kappa(["a"], ["a"]) is None


def test_answers_resolve_to_systems_and_the_summary_counts_ties_apart(tmp_path):
    db = tmp_path / "r.sqlite3"
    # decoupled shown as A and chosen, baseline shown as A and B chosen, a tie, a baseline win
    ratings.add("Lina", PAIR, "1", "CAI", "decoupled", "A", "A", path=db)
    ratings.add("Lina", PAIR, "2", "CAI", "baseline", "B", "tie", path=db)
    ratings.add("Lina", PAIR, "3", "CAI", "baseline", "tie", "A", path=db)
    ratings.add("Lina", PAIR, "4", "BEI", "decoupled", "B", "B", path=db)
    ratings.add("Lina", PAIR, "4", "BEI", "decoupled", "A", "B", path=db)  # changed her mind: the latest counts
    ratings.add("Omar", PAIR, "1", "CAI", "baseline", "B", "A", path=db)  # agrees on dialect, not on meaning
    s = ratings.summary(PAIR, path=db)
    assert s["answers"] == 6 and s["items"] == 4 and s["raters"] == ["Lina", "Omar"]
    d = s["preference"]["dialect"]
    assert (d["decoupled"], d["baseline"], d["ties"], d["n"]) == (4, 0, 1, 5)
    assert d["decoupled_rate"] == 1.0 and d["p_value"] == pytest.approx(2 / 16)
    m = s["preference"]["meaning"]
    assert (m["decoupled"], m["baseline"], m["ties"]) == (1, 3, 1)
    agree = s["agreement"]
    assert agree["dialect"]["items"] == 1 and agree["dialect"]["percent"] == 1.0
    assert agree["meaning"]["percent"] == 0.0
    assert ratings.rated_by("Lina", PAIR, path=db) == {("CAI", "1"), ("CAI", "2"), ("CAI", "3"), ("BEI", "4")}


@pytest.mark.parametrize("kwargs, words", [
    ({"rater": "  "}, "name"), ({"rater": "x" * 61}, "at most"), ({"rater": "a\u200bb"}, "invisible"),
    ({"dialect_answer": "C"}, "dialect answer"), ({"meaning_answer": ""}, "meaning answer"),
    ({"shown_as_a": "base"}, "shown as A"),
])
def test_bad_input_is_a_message_and_stores_nothing(tmp_path, kwargs, words):
    db = tmp_path / "r.sqlite3"
    args = {"rater": "Lina", "pair": PAIR, "sentence_id": "1", "variety": "CAI", "shown_as_a": "baseline",
            "dialect_answer": "A", "meaning_answer": "B", **kwargs}
    with pytest.raises(UserError, match=words):
        ratings.add(**args, path=db)
    assert ratings.all_ratings(path=db) == []


def test_sides_are_drawn_at_random():
    rng = random.Random(3)
    drawn = [ratings.draw_side(rng) for _ in range(200)]
    assert set(drawn) == {"baseline", "decoupled"} and 60 < drawn.count("baseline") < 140


def test_export_csv_columns_and_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    ratings.add("=HYPERLINK(1)", PAIR, "7", "CAI", "baseline", "A", "B")
    ratings.add("Omar", PAIR, "8", "BEI", "decoupled", "tie", "A")
    out = tmp_path / "out" / "ratings.csv"
    out.parent.mkdir()
    assert cli(["ratings", "export", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == ratings.COLUMNS == (
        "id", "time", "rater", "pair", "baseline_run", "decoupled_run", "sentence_id", "variety", "shown_as_a",
        "dialect_answer", "meaning_answer", "dialect_preferred", "meaning_preferred")
    assert rows[0]["rater"] == "'=HYPERLINK(1)"  # no formula reaches a spreadsheet
    assert (rows[0]["baseline_run"], rows[0]["decoupled_run"]) == tuple(PAIR.split("+"))
    assert (rows[0]["dialect_preferred"], rows[0]["meaning_preferred"]) == ("baseline", "decoupled")
    assert (rows[1]["dialect_preferred"], rows[1]["meaning_preferred"]) == ("tie", "decoupled")
    assert rows[0]["time"].endswith("Z")
    assert capsys.readouterr().out == f"wrote 2 answers to {out}\n"
    assert cli(["ratings", "export"]) == 0  # no --out: the CSV alone on stdout, for a pipe
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")
    assert cli(["ratings", "summary"]) == 0
    text = capsys.readouterr().out
    assert "2 answers" in text and "sign test p = 1.0000" in text
