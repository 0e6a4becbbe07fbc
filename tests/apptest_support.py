"""AppTest helpers shared by the page tests (test_app_pages.py, test_app_workbench.py): the
app opened on one page, and the check that nothing on it failed unexpectedly."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parent.parent


def new_app() -> AppTest:
    """app.py, not yet run; generous timeout: the first run of a page may load a tiny model."""
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=180)


def open_page(page: str | None = None, *, strict: bool = False) -> AppTest:
    """The app run once, then switched to pages/<page>.py (None: where app.py sends a visitor)."""
    at = new_app().run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert_clean(at, strict=strict)
    return at


def assert_clean(at: AppTest, *, strict: bool = False) -> None:
    """No exception element, and no error that reads like an unexpected failure; `strict`:
    no error box at all (for pages where every input is valid)."""
    assert not at.exception, [e.value for e in at.exception]
    bad = [e.value for e in at.error if strict or "Something went wrong" in e.value or "Traceback" in e.value]
    assert not bad, bad


def compare_picking(pair_key: str, *, strict: bool = False) -> AppTest:
    """The Compare page on run pair `pair_key`, set to pick its sentence from the test split."""
    at = open_page("compare", strict=strict)
    at.selectbox(key="compare_pair").set_value(pair_key)
    at.radio(key="compare_mode").set_value("Pick one from the test split").run()
    assert_clean(at, strict=strict)
    return at
