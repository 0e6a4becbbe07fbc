"""backend.browse (a run pair's outputs as one table) and backend.wordmarks (MSA words, the
words where the adapters differ, the RTL markup), on run folders written to disk and the
offline corpus's real lexicon."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sacrebleu.metrics import CHRF

from backend import browse, wordmarks
from backend.__main__ import main as cli
from backend.data import load_corpus
from backend.data.normalize import normalize_arabic
from backend.errors import RunError
from backend.runs import Run

LINES = [  # (variety, id, source, reference, baseline output, decoupled output)
    ("CAI", "s1", "هل القلعة مغلقة الآن؟", "هل القلعة مغلقة دلوقتي؟", "هل القلعة مغلقة الآن؟", "هل القلعة مغلقة دلوقتي؟"),
    ("CAI", "s2", "لا نريد أرزا اليوم.", "مش عايزين رز النهارده.", "مش عايزين رز النهارده.", "لا نريد أرزا."),
    ("BEI", "s3", "بكم الخريطة؟", "بقديش الخريطة؟", "بكم الخريطة؟", "بكم الخريطة؟"),
    ("BEI", "s4", "أين الفندق؟", "وين الأوتيل؟", "أين الفندق", "وين الاوتيل؟"),
]


def _run(root, name: str, column: int, extra: dict | None = None) -> Run:
    d = root / name
    d.mkdir(parents=True)
    lines = [{"id": i, "variety": v, "source": s, "source_variety": "MSA", "reference": r, "hypothesis": row[column],
              "label": v} for (v, i, s, r, *_), row in zip(LINES, LINES)]
    (d / "outputs.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), "utf-8")
    (d / "eval.json").write_text(json.dumps({"split": "test"}), "utf-8")
    for fname, content in (extra or {}).items():
        (d / fname).write_text(content, "utf-8")
    return Run(d)


@pytest.fixture()
def table(tmp_path) -> browse.Table:
    steered = json.dumps({"id": "s1", "variety": "CAI", "source": "x", "reference": LINES[0][3],
                          "hypothesis": "دلوقتي"}, ensure_ascii=False) + "\n"
    return browse.pair_table(_run(tmp_path, "b", 4), _run(tmp_path, "d", 5, {"outputs-steer-project-s1.jsonl": steered}))


def test_the_table_joins_both_runs_and_scores_each_sentence(table):
    assert [r.id for r in table.rows] == ["s1", "s2", "s3", "s4"] and table.split == "test"
    assert table.systems == ["baseline", "decoupled", "decoupled+project-s1"]
    chrf = CHRF(word_order=2)
    for row, (_, _, _, ref, base, dec) in zip(table.rows, LINES):
        for system, hyp in (("baseline", base), ("decoupled", dec)):
            expected = chrf.sentence_score(normalize_arabic(hyp), [normalize_arabic(ref)]).score
            assert row.systems[system].chrf == pytest.approx(expected, abs=1e-3)
    assert table.rows[0].systems["decoupled+project-s1"].text == "دلوقتي"
    assert "decoupled+project-s1" not in table.rows[1].systems
    assert table.rows[0].diff > 0 > table.rows[1].diff and table.rows[2].diff == 0


def test_filter_search_and_sort(table):
    rows = table.rows
    diffs = [r.diff for r in browse.select(rows, sort="diff_desc")]
    assert diffs == sorted(diffs, reverse=True) and diffs[0] > diffs[1] > 0
    assert [r.id for r in browse.select(rows, sort="diff_asc")][0] == "s2"
    assert [r.id for r in browse.select(rows, sort="abs_diff")][-1] == "s3"
    assert [r.id for r in browse.select(rows, variety="BEI", sort="corpus")] == ["s3", "s4"]
    assert [r.id for r in browse.select(rows, only_different=True, sort="corpus")] == ["s1", "s2", "s4"]
    # the search normalises: "الاوتيل" finds "الأوتيل", a diacritised query finds the plain text
    assert [r.id for r in browse.select(rows, query="الاوتيل")] == ["s4"]
    assert [r.id for r in browse.select(rows, query="أَرْزًا")] == ["s2"]
    assert browse.select(rows, query="لا يوجد") == []


def test_csv_has_a_column_group_per_system(table):
    text = browse.to_csv(table.rows, table.systems)
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == ["id", "variety", "source", "reference", "baseline", "decoupled",
                                 "decoupled+project-s1", "baseline_chrf", "decoupled_chrf",
                                 "decoupled+project-s1_chrf", "chrf_diff", "baseline_label", "decoupled_label",
                                 "decoupled+project-s1_label"]
    assert [r["source"] for r in reader] == [x[2] for x in LINES]


def test_an_unevaluated_run_is_a_message(tmp_path):
    (tmp_path / "b").mkdir()
    with pytest.raises(RunError, match="not evaluated yet"):
        browse.pair_table(Run(tmp_path / "b"), _run(tmp_path, "d", 5))


def test_the_lexicon_marks_msa_words_and_never_the_dialects_own():
    marker = wordmarks.marker_for("offline:size=400")
    assert isinstance(marker, wordmarks.LexiconMarker) and "lexicon" in marker.how
    assert marker.msa_words("هل القلعة مغلقة الآن؟", "CAI") == [False, False, False, True]
    assert marker.msa_words("هل القلعة مغلقة الآن؟", "MSA") == [False] * 4
    corpus = load_corpus("offline:size=400")
    refs = [p.target for p in corpus.pairs if p.target_variety == "CAI"]
    assert not any(any(marker.msa_words(t, "CAI")) for t in refs)  # a dialect reference has no MSA-only word
    sources = [p.source for p in corpus.pairs if p.target_variety == "CAI" and p.source != p.target]
    assert sum(any(marker.msa_words(t, "CAI")) for t in sources) > 0.8 * len(sources)


def test_a_per_word_identifier_for_other_corpora():
    texts = ["أريد القهوة الآن", "أريد الشاي الآن", "الآن نذهب", "عايز قهوة دلوقتي", "عايز شاي دلوقتي", "القهوة حلوة"]
    labels = ["MSA", "MSA", "MSA", "CAI", "CAI", "CAI"]
    marker = wordmarks.CorpusMarker.fit(texts * 3, labels * 3)
    assert "estimate" in marker.how
    assert marker.msa_words("أريد قهوة الآن", "CAI") == [True, False, True]
    assert marker.msa_words("أريد قهوة الآن", "BEI") == [False, False, False]  # no BEI text: no claim


def test_changed_words_and_escaped_rtl_markup():
    a, b = "مش عايزين رز <b>النهارده</b>", "لا نريد رز <b>النهارده</b>"
    assert wordmarks.changed(a, b) == ([True, True, False, False], [True, True, False, False])
    html = wordmarks.to_html(a, [False, False, False, True], [True, True, False, False])
    assert 'dir="rtl"' in html and "<b>" not in html and "&lt;b&gt;النهارده&lt;/b&gt;" in html
    assert html.count('class="dd-w') == 4 and html.count("dd-diff") == 2 and html.count("dd-msa") == 1
    marked = wordmarks.mark_outputs({"baseline": a, "decoupled": b, "base": "x"}, "CAI", None)
    assert set(marked) == {"baseline", "decoupled", "base"} and "dd-diff" not in marked["base"]


def test_the_browse_cli_without_a_pair_is_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path / "empty"))
    assert cli(["browse"]) == 2  # no pair: a one-line message
    assert "no finished run pair" in capsys.readouterr().err
