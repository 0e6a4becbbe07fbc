"""Browse a run pair's evaluated test outputs: where baseline and decoupled differ, sentence by sentence.

Corpus chrF++ says which adapter is better on average; a linguist judging the method wants
the sentences behind it. `pair_table` joins the two runs' outputs.jsonl (written by
`backend.evaluation.evaluate`) on (variety, sentence id) into one row per test sentence:
source, reference, each system's output, its sentence chrF++ (sacrebleu CHRF(word_order=2)
on normalised text, `metrics.sentence_chrf`) and the dialect identifier's label. The
steered arms evaluated inside either run (`outputs-steer-<slug>.jsonl`, backend.arms) join
as extra systems. `select` filters, searches (after the project's Arabic normalisation)
and sorts; `to_csv` writes what is selected.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.data.normalize import normalize_arabic
from backend.errors import RunError
from backend.evaluation import metrics
from backend.runs import Run, read_jsonl

OUTPUTS = "outputs.jsonl"
STEERED_GLOB = "outputs-steer-*.jsonl"
SORTS = {
    "diff_desc": "chrF++ difference (decoupled − baseline), largest first",
    "diff_asc": "chrF++ difference (decoupled − baseline), smallest first",
    "abs_diff": "size of the chrF++ difference, largest first",
    "corpus": "test split order",
}


@dataclass(frozen=True)
class SystemCell:
    text: str
    chrf: float | None
    label: str | None


@dataclass(frozen=True)
class Row:
    """One test sentence: its source and reference, and every system's output."""

    id: str
    variety: str
    source: str
    source_variety: str
    reference: str
    systems: dict[str, SystemCell] = field(default_factory=dict)

    @property
    def diff(self) -> float | None:
        """Decoupled minus baseline sentence chrF++ (None when either is missing)."""
        b, d = self.systems.get("baseline"), self.systems.get("decoupled")
        if b is None or d is None or b.chrf is None or d.chrf is None:
            return None
        return d.chrf - b.chrf

    @property
    def differs(self) -> bool:
        b, d = self.systems.get("baseline"), self.systems.get("decoupled")
        return b is not None and d is not None and normalize_arabic(b.text) != normalize_arabic(d.text)


@dataclass(frozen=True)
class Table:
    rows: list[Row]
    systems: list[str]  # baseline, decoupled, then steered arms ("decoupled+project-s1", ...)
    unmatched: int  # sentences evaluated in one run only (left out)
    split: str | None


def _cell(line: dict[str, Any]) -> SystemCell:
    text = str(line.get("hypothesis") or "")
    chrf = line.get("chrf")
    if isinstance(chrf, bool) or not isinstance(chrf, (int, float)) or not math.isfinite(chrf):
        chrf = metrics.sentence_chrf(text, str(line.get("reference") or ""))
    label = line.get("label")
    return SystemCell(text, round(float(chrf), 3), str(label) if label else None)


def _by_key(lines: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(str(x.get("variety")), str(x.get("id"))): x for x in lines if x.get("id") is not None}


def _steered(run: Run, system: str) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """The steered evaluations inside a run folder: '<system>+<slug>' -> outputs by key."""
    out = {}
    for path in sorted(run.dir.glob(STEERED_GLOB)):
        if path.is_file() and not path.is_symlink():
            slug = path.name.removeprefix("outputs-steer-").removesuffix(".jsonl")
            out[f"{system}+{slug}"] = _by_key(read_jsonl(path))
    return out


def pair_table(baseline: Run, decoupled: Run) -> Table:
    """One row per test sentence both runs were evaluated on, in the baseline's order."""
    for run in (baseline, decoupled):
        if not (run.dir / OUTPUTS).is_file():
            raise RunError(f"run {run.id} is not evaluated yet (no {OUTPUTS}); "
                           f"run `python -m backend evaluate {run.id}`")
    base, dec = _by_key(read_jsonl(baseline.dir / OUTPUTS)), _by_key(read_jsonl(decoupled.dir / OUTPUTS))
    arms = {**_steered(baseline, "baseline"), **_steered(decoupled, "decoupled")}
    rows = []
    for key, b in base.items():
        d = dec.get(key)
        if d is None:
            continue
        systems = {"baseline": _cell(b), "decoupled": _cell(d)}
        for name, lines in arms.items():
            if key in lines:
                systems[name] = _cell(lines[key])
        rows.append(Row(str(b["id"]), key[0], str(b.get("source") or ""), str(b.get("source_variety") or "MSA"),
                        str(b.get("reference") or ""), systems))
    report = baseline.eval() or {}
    unmatched = len(set(base) ^ set(dec))
    return Table(rows, ["baseline", "decoupled", *arms], unmatched, report.get("split"))


def select(rows: Sequence[Row], *, variety: str | None = None, query: str = "", sort: str = "diff_desc",
           only_different: bool = False) -> list[Row]:
    """The rows of one variety (None: all) whose source, reference or any output holds
    `query` once both are normalised (diacritics, alef shapes, tatweel), sorted by `sort`."""
    needle = normalize_arabic(query).casefold()
    out = [r for r in rows if (variety is None or r.variety == variety) and (not only_different or r.differs)]
    if needle:
        out = [r for r in out if any(needle in normalize_arabic(t).casefold()
                                     for t in (r.source, r.reference, *(c.text for c in r.systems.values())))]
    if sort == "corpus":
        return out
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    missing = [r for r in out if r.diff is None]
    scored = [r for r in out if r.diff is not None]
    key = {"diff_desc": lambda r: -r.diff, "diff_asc": lambda r: r.diff, "abs_diff": lambda r: -abs(r.diff)}[sort]
    return sorted(scored, key=key) + missing


def records(rows: Sequence[Row], systems: Sequence[str]) -> list[dict[str, Any]]:
    """Flat records (one per row) with a text, chrF++ and label column per system."""
    out = []
    for r in rows:
        rec: dict[str, Any] = {"id": r.id, "variety": r.variety, "source": r.source, "reference": r.reference}
        for s in systems:
            cell = r.systems.get(s)
            rec[s] = cell.text if cell else None
        for s in systems:
            cell = r.systems.get(s)
            rec[f"{s}_chrf"] = cell.chrf if cell else None
        rec["chrf_diff"] = None if r.diff is None else round(r.diff, 3)
        for s in systems:
            cell = r.systems.get(s)
            rec[f"{s}_label"] = cell.label if cell else None
        out.append(rec)
    return out


def to_csv(rows: Sequence[Row], systems: Sequence[str]) -> str:
    """The rows as CSV text (UTF-8 when encoded), one column group per system."""
    recs = records(rows, systems)
    buf = io.StringIO()
    header = list(recs[0]) if recs else ["id", "variety", "source", "reference", *systems]
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(recs)
    return buf.getvalue()
