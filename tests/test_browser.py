"""The app in a real browser: Playwright (sync API) driving Debian's headless Chromium against
`streamlit run app.py` on a free local port, with DD_MODELS_DIR holding the tiny demo models.

Opens the app, compares a sentence on the demo models, launches a small training from the
Train page and watches its progress move, cancels it, and saves a screenshot of every page to
artifacts/screenshots/ (git-ignored). Skips when /usr/bin/chromium is missing; never runs
`playwright install`.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from browser_support import REPO, goto, no_traceback, settle, shoot, streamlit_server

from backend import demo, jobs
from backend.runs import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TINY = demo.DemoOptions.tiny()
PAGES = {"Welcome": "home", "Compare": "compare", "Browse": "browse", "Rate": "rate", "Train": "train",
         "Overlap": "overlap", "Results": "results", "Data": "data"}


def _compare(page, server: str, reference: str = "", steered: bool = False) -> list:
    """Compare one sentence on the Compare page (where the app opens once runs exist), with a
    reference or the steered fourth column if asked; returns the output cards."""
    goto(page, server)
    assert page.inner_text("h1").strip() == "Compare"
    if steered:
        page.get_by_text("Add a fourth column: inference-time steering").click()
        settle(page)
        page.get_by_text("Strength").wait_for()
    page.get_by_role("textbox", name="Sentence", exact=True).fill("أريد أن أشرب القهوة الآن")
    if reference:
        page.get_by_role("textbox", name="Reference translation (optional, for chrF++)").fill(reference)
    page.keyboard.press("Tab")
    settle(page)
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text("one batched call").wait_for(timeout=120_000)
    settle(page)
    no_traceback(page)
    return page.query_selector_all(".dd-card")


def test_compare_a_sentence_on_the_demo_models(page, server):
    cards = _compare(page, server, reference="عايز اشرب قهوة دلوقتي")
    assert len(cards) == 3
    for card in cards:
        style = card.evaluate("e => [getComputedStyle(e).direction, getComputedStyle(e).fontFamily]")
        assert style[0] == "rtl" and "Noto Naskh Arabic" in style[1]
    assert page.get_by_text("chrF++").count() >= 3
    shoot(page, "compare-result")


def test_every_page_renders_and_is_screenshotted(page, server):
    goto(page, server)
    for title, name in PAGES.items():
        page.get_by_role("link", name=title).first.click()
        page.wait_for_function(f"document.querySelector('h1') && document.querySelector('h1').innerText.includes("
                               f"{'Dialect decoupling' if name == 'home' else title!r})")
        settle(page)
        if name in ("overlap", "results"):
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            page.wait_for_timeout(1000)
        no_traceback(page)
        shoot(page, name)


def _choose_single_run(page) -> None:
    """Pick 'Decoupled only' and wait until the script has seen it: the estimate stops saying
    'per run' (it does for a pair). A click that lands while the two-second progress fragment
    is re-running can be dropped by the browser, so it is tried again once."""
    radio = page.get_by_role("radio", name="Decoupled only")
    for _ in range(2):
        page.get_by_text("Decoupled only").click()
        settle(page)
        try:
            page.wait_for_function("!document.body.innerText.includes('per run)')", timeout=15_000)
        except Exception:
            continue
        if radio.is_checked():
            return
    raise AssertionError("the 'Decoupled only' choice did not reach the app")


def test_launch_a_training_and_watch_it_progress(page, server):
    before = {r.id for r in list_runs()}
    goto(page, server, "train")
    page.get_by_role("textbox", name="Data source").fill(TINY.source)
    page.get_by_role("combobox", name="Base model").click()  # the shipped default is listed first
    page.get_by_role("option", name="tiny", exact=True).click()
    settle(page)
    page.get_by_role("spinbutton", name="Steps", exact=True).fill("400")
    page.keyboard.press("Tab")
    settle(page)
    _choose_single_run(page)
    no_traceback(page)
    assert page.get_by_text("Estimated duration").count() == 1
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"^Queued \d")).wait_for(timeout=60_000)
    new = [r for r in list_runs() if r.id not in before]
    assert len(new) == 1
    run = new[0]
    try:
        assert run.config().method == "decoupled" and run.config().base == "tiny"
        seen: list[int] = []
        deadline = time.time() + 240
        while time.time() < deadline:
            steps = [int(m) for m in re.findall(r"step (\d+) of 400", page.inner_text("body"))]
            if steps:
                seen.append(max(steps))
            if len(seen) >= 2 and seen[-1] >= seen[0] + 2:
                break
            page.wait_for_timeout(1000)
        assert len(seen) >= 2 and seen[-1] > seen[0], f"progress did not move: {seen}; {run.state()}"
        shoot(page, "train-progress")
        page.get_by_role("button", name="Cancel", exact=True).first.click()
        deadline = time.time() + 120
        while time.time() < deadline and run.state().get("state") not in ("cancelled", "finished", "failed"):
            time.sleep(1)
        assert run.state().get("state") in ("cancelled", "finished"), run.state()
        no_traceback(page)
    finally:
        if run.state().get("state") in jobs.ACTIVE:
            jobs.cancel(run.id, wait_s=30)


APP_PAGES = list(PAGES)


def _nav_links(page) -> list[str]:
    """The sidebar's page titles (each link's last line; the first is its icon's name)."""
    return [t.strip().splitlines()[-1] for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def test_the_first_visitor_of_a_fresh_server_sees_the_gate_in_the_apps_navigation(browser, tmp_path):
    """On a fresh server the first request is for /results: the gate shows inside the app's
    own navigation (its page titles, never the file names of a pages/ folder), and after
    the password the visitor is on Results. Also for a second visitor to another page."""
    with streamlit_server(tmp_path, DD_PASSWORD="s3cret") as url:
        for path, title in (("results", "Results"), ("overlap", "Overlap"), ("", "Dialect decoupling")):
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/{path}")
            page.wait_for_selector("input[type=password]", timeout=90_000)
            settle(page)
            assert _nav_links(page) == APP_PAGES, _nav_links(page)
            assert not path or page.get_by_role("heading", name=title).count() == 0
            page.locator("input[type=password]").fill("s3cret")
            page.keyboard.press("Enter")
            page.locator("input[type=password]").wait_for(state="detached", timeout=60_000)
            page.get_by_role("heading", name=title).wait_for(timeout=60_000)
            settle(page)
            assert page.url.rstrip("/") == f"{url}/{path}".rstrip("/"), page.url
            assert _nav_links(page) == APP_PAGES
            no_traceback(page)
            context.close()


def test_a_fresh_servers_first_request_for_the_ui_module_gets_the_apps_navigation(browser, tmp_path):
    """`/ui` names pages/_ui.py in Streamlit's pages/-folder mode: as a first request it must
    not run that module as a page, but show the app's navigation and gate."""
    with streamlit_server(tmp_path, DD_PASSWORD="s3cret") as url:
        page = browser.new_page()
        page.goto(f"{url}/ui")
        page.wait_for_selector("input[type=password]", timeout=90_000)
        settle(page)
        assert _nav_links(page) == APP_PAGES, _nav_links(page)
        no_traceback(page)
        page.close()


def test_every_page_keeps_its_url_once_models_exist(browser, server):
    """A bookmarked /compare (or /results) opens that page, with no "Page not found" dialog,
    after the demo models exist; "/" sends a new visitor to Compare, and Welcome stays
    reachable from the navigation."""
    for path, title in (("compare", "Compare"), ("results", "Results"), ("overlap", "Overlap")):
        context = browser.new_context()
        page = context.new_page()
        goto(page, server, path)
        assert page.inner_text("h1").strip() == title
        assert page.url.rstrip("/") == f"{server}/{path}", page.url
        assert page.get_by_text("Page not found").count() == 0
        context.close()
    context = browser.new_context()
    page = context.new_page()
    goto(page, server)
    page.get_by_role("heading", name="Compare").wait_for(timeout=60_000)
    assert page.url.rstrip("/") == f"{server}/compare", page.url
    page.locator('[data-testid="stSidebarNav"] a', has_text="Welcome").click()
    page.get_by_role("heading", name="Dialect decoupling").wait_for(timeout=60_000)
    settle(page)
    assert page.url.rstrip("/") == server, page.url
    assert page.get_by_text("Page not found").count() == 0
    context.close()


def _server_paths(models: Path) -> list[str]:
    return [p for p in {str(REPO), str(REPO.parent), str(models), sys.prefix, str(Path.home()), "/tmp/"}
            if len(p) > 1]


def test_no_message_shows_a_server_path_or_renders_typed_markdown(browser, tmp_path):
    """The refusal cases of the Data and Train pages, and a damaged run folder, behind a
    password on a fresh server: every message names folders relative to the project, typed
    markdown/HTML stays text, and nothing shows a traceback."""
    run = tmp_path / "runs" / "20260101-000000-decoupled-damaged"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"method": "decoupled"}', encoding="utf-8")
    (run / "state.json").write_text("[1, 2]", encoding="utf-8")
    with streamlit_server(tmp_path, DD_PASSWORD="s3cret") as url:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{url}/data")
        page.wait_for_selector("input[type=password]", timeout=90_000)
        page.locator("input[type=password]").fill("s3cret")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Data").wait_for(timeout=90_000)
        settle(page)
        shown: list[str] = []
        hostile = "`x` **bold** [link](http://127.0.0.1:9/l) ![img](http://127.0.0.1:9/i.png) <b>html</b> $x^2$"
        for spec in ("csv:/etc/passwd", "madar:../../../etc", "csv:no-such-file.tsv", f"csv:{REPO}/app.py",
                     "madar:" + hostile, "hub:../../x", f"offline?{hostile}"):
            page.get_by_role("textbox", name="Corpus").fill(spec)
            page.keyboard.press("Enter")
            settle(page)
            no_traceback(page)
            shown.append(page.inner_text('[data-testid="stMain"]'))
        page.get_by_role("textbox", name="Corpus").fill("offline")
        page.keyboard.press("Enter")
        settle(page)
        page.get_by_role("textbox", name="Contains (optional)").fill(hostile)
        page.keyboard.press("Enter")
        settle(page)
        shown.append(page.inner_text('[data-testid="stMain"]'))
        page.get_by_role("link", name="Train").first.click()
        page.get_by_role("heading", name="Train").wait_for()
        settle(page)
        for source in ("csv:/etc/passwd", f"madar:{tmp_path}", "madar:" + hostile):
            page.get_by_role("textbox", name="Data source").fill(source)
            page.keyboard.press("Enter")
            settle(page)
            no_traceback(page)
            shown.append(page.inner_text('[data-testid="stMain"]'))
        for title in ("Compare", "Overlap"):
            page.get_by_role("link", name=title).first.click()
            page.get_by_role("heading", name=title).wait_for()
            settle(page)
            page.get_by_text("damaged run folder").click()  # open the list of damaged runs
            settle(page)
            no_traceback(page)
            shown.append(page.inner_text('[data-testid="stMain"]'))
        assert "state.json holds a list, not an object" in "\n".join(shown)
        for text in shown:
            for server_path in _server_paths(tmp_path):
                assert server_path not in text, (server_path, text[:1500])
        assert page.locator("img[src*='127.0.0.1:9'], a[href*='127.0.0.1:9']").count() == 0
        context.close()


def test_compare_with_a_steered_fourth_column(page, server):
    assert len(_compare(page, server, steered=True)) == 4
    assert page.get_by_text(re.compile(r"^Steered decoupled: project, s=1")).count() == 1
    shoot(page, "compare-steered")
