"""The linguists' workbench through AppTest: the Browse page (table, filters, words marked),
blind rating on the Rate page up to the preference rate on Results, Compare's source shown
without a stray "None", and `python -m backend browse` on the same real tiny demo pair."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
from apptest_support import assert_clean, compare_picking, open_page
from streamlit.testing.v1 import AppTest

from backend import browse, paths, ratings
from backend.__main__ import main as cli
from backend.runs import Run


def _open(page: str) -> AppTest:
    return open_page(page, strict=True)


def _assert_clean(at: AppTest) -> None:
    assert_clean(at, strict=True)


def _html(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_browse_and_rate_without_runs_say_what_to_do(empty_models):
    at = _open("browse")
    assert at.info and "Welcome" in at.info[0].value
    at = _open("rate")
    at.text_input(key="rate_name").input("Lina")
    at.button[0].click().run()
    _assert_clean(at)
    assert at.info and "no finished run pair" in at.info[0].value


@pytest.mark.slow
def test_browse_filters_searches_and_marks_words(demo_pair):
    at = _open("browse")
    at.selectbox(key="browse_pair").set_value(demo_pair.key).run()
    _assert_clean(at)
    df = at.dataframe[0].value
    assert len(df) == 24 and {"source", "reference", "baseline", "decoupled", "baseline_chrf", "decoupled_chrf",
                              "chrf_diff", "baseline_label", "decoupled_label"} <= set(df.columns)
    at.selectbox(key="browse_variety").set_value("CAI").run()
    assert set(at.dataframe[0].value["variety"]) == {"CAI"} and len(at.dataframe[0].value) == 8
    source = at.dataframe[0].value["source"].iloc[0]
    at.text_input(key="browse_query").input(source.split()[1]).run()
    assert 1 <= len(at.dataframe[0].value) < 8 and source in list(at.dataframe[0].value["source"])
    assert at.get("download_button")
    html = _html(at)  # the word view: the MSA source, marked against Cairo Arabic
    assert 'class="dd-w dd-msa"' in html and 'dir="rtl"' in html and "lexicon" in "\n".join(c.value for c in at.caption)
    at.text_input(key="browse_query").input("لا يوجد هذا").run()
    _assert_clean(at)
    assert len(at.dataframe[0].value) == 0 and "No sentence matches." in [i.value for i in at.info]


@pytest.mark.slow
def test_rate_twenty_pairs_blind_then_see_the_rate_on_results(demo_pair):
    at = _open("rate")
    at.button[0].click().run()  # no name yet
    assert at.error and "name" in at.error[0].value
    at.text_input(key="rate_name").input("AppTest rater")
    at.button[0].click().run()
    _assert_clean(at)
    at.selectbox(key="rate_pair").set_value(demo_pair.key).run()
    seen = set()
    for i in range(20):
        shown = at.session_state["rate_item"]
        seen.add(shown[3])
        labels = [r.label for r in at.radio]
        assert labels[0].startswith("Which is more ") and labels[1] == ratings.QUESTIONS["meaning"]
        at.radio[0].set_value("A" if i % 3 else "tie")
        at.radio[1].set_value("B")
        next(b for b in at.button if b.label == "Save and next").click().run()
        _assert_clean(at)
        assert at.session_state["rate_item"] != shown
    stored = [r for r in ratings.all_ratings(demo_pair.key) if r.rater == "AppTest rater"]
    assert len(stored) == 20 and len({(r.variety, r.sentence_id) for r in stored}) == 20
    assert {r.shown_as_a for r in stored} == {"baseline", "decoupled"}  # P(one side 20 times) = 2^-19
    assert "You have rated 20 of 24" in at.get("progress")[0].proto.text
    # the page never names which side is which: only the introduction mentions the two adapters
    naming = [m.value for m in at.markdown if "baseline" in m.value or "decoupled" in m.value]
    assert len(naming) == 1 and "order drawn at random" in naming[0]
    at.switch_page("pages/results.py").run()
    _assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    rate = metrics["Decoupled preferred as more dialectal"]
    s = ratings.summary(demo_pair.key)["preference"]["dialect"]
    assert rate == f"{100 * s['decoupled_rate']:.0f}%"
    assert any("sign test" in c.value for c in at.caption)


@pytest.mark.slow
def test_browse_and_rate_wait_for_an_unevaluated_run_and_read_it_once_evaluated(demo_pair):
    """The pair choice Browse and Rate share: a pair whose decoupled run has no outputs yet
    says so on both pages; once the run is evaluated, the same session reads it."""
    copy = Run(paths.runs_dir() / f"{demo_pair.decoupled.id}-unevaluated")  # pairs with the same baseline
    shutil.copytree(demo_pair.decoupled.dir, copy.dir)
    (copy.dir / browse.OUTPUTS).unlink()
    key = f"{demo_pair.baseline.id}+{copy.id}"
    try:
        browsing = _open("browse")
        browsing.selectbox(key="browse_pair").set_value(key).run()
        rating = _open("rate")
        rating.text_input(key="rate_name").input("Lina")
        rating.button[0].click().run()
        rating.selectbox(key="rate_pair").set_value(key).run()
        for at in (browsing, rating):
            _assert_clean(at)
            assert len(at.info) == 1 and "is not evaluated yet" in at.info[0].value
        shutil.copy(demo_pair.decoupled.dir / browse.OUTPUTS, copy.dir / browse.OUTPUTS)
        browsing.run()
        rating.run()
        for at in (browsing, rating):
            _assert_clean(at)
            assert not at.info
        assert len(browsing.dataframe[0].value) == 24
        assert "You have rated 0 of 24" in rating.get("progress")[0].proto.text
    finally:
        shutil.rmtree(copy.dir, ignore_errors=True)


@pytest.mark.slow
def test_compare_shows_the_picked_source_without_a_stray_none(demo_pair):
    at = compare_picking(demo_pair.key, strict=True)
    values = [str(e.value) for e in (*at.markdown, *at.get("text"), *at.caption)]
    assert "None" not in values and not [v for v in values if v.strip("` ") == "None"]
    assert any('dir="rtl"' in v for v in values)


@pytest.mark.slow
def test_the_browse_cli_on_the_demo_pair(demo_pair, tmp_path):
    out = tmp_path / "cai.csv"
    assert cli(["browse", demo_pair.key, "--variety", "CAI", "--sort", "abs_diff", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 8 and {r["variety"] for r in rows} == {"CAI"}
