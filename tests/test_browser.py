"""The app in a real browser: Playwright (sync API) driving Debian's headless Chromium against
`streamlit run app.py` on a free local port, with DD_MODELS_DIR holding the tiny demo models.

Opens the app, compares a sentence on the demo models, launches a small training from the
Train page and watches its progress move, cancels it, and saves a screenshot of every page to
artifacts/screenshots/ (git-ignored). Skips when /usr/bin/chromium is missing; never runs
`playwright install`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from backend import demo, jobs, paths
from backend.runs import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "artifacts" / "screenshots"
TINY = demo.DemoOptions.tiny()
PAGES = {"Welcome": "home", "Compare": "compare", "Train": "train", "Overlap": "overlap", "Results": "results",
         "Data": "data"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package); browser tests need it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(browser, tiny_base):
    status = demo.build_demo(TINY)
    assert status["state"] == "finished"
    port = _free_port()
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = open(SHOTS.parent / "streamlit.log", "w", encoding="utf-8")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env={**os.environ, "DD_MODELS_DIR": str(paths.models_dir()), "DD_READ_ONLY": ""},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start; see artifacts/streamlit.log")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1440, "height": 1100}, locale="en-US")
    p = context.new_page()
    p.set_default_timeout(60_000)
    yield p
    context.close()


def _goto(page, server: str, path: str = "") -> None:
    page.goto(f"{server}/{path}")
    page.wait_for_selector("h1", timeout=90_000)
    _settle(page)


def _settle(page) -> None:
    """Wait until Streamlit has finished running the script (no 'Running...' indicator)."""
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000)


def _shoot(page, name: str) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its main container, so the
    viewport is made as tall as that container's content first."""
    height = page.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], "
                           "[data-testid=\"stAppViewContainer\"]')].map(e => e.scrollHeight), 800)")
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    page.set_viewport_size({"width": width, "height": 1100})


def _no_traceback(page) -> None:
    body = page.inner_text("body")
    assert "Traceback" not in body and "Something went wrong" not in body, body[:2000]
    assert not page.query_selector('[data-testid="stException"]')


def test_compare_a_sentence_on_the_demo_models(page, server):
    _goto(page, server)
    assert page.inner_text("h1").strip() == "Compare"  # runs exist: the app opens on Compare
    page.get_by_role("textbox", name="Sentence", exact=True).fill("أريد أن أشرب القهوة الآن")
    page.get_by_role("textbox", name="Reference translation (optional, for chrF++)").fill("عايز اشرب قهوة دلوقتي")
    page.keyboard.press("Tab")
    _settle(page)
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text("one batched call").wait_for(timeout=120_000)
    _settle(page)
    _no_traceback(page)
    cards = page.query_selector_all(".dd-card")
    assert len(cards) == 3
    for card in cards:
        style = card.evaluate("e => [getComputedStyle(e).direction, getComputedStyle(e).fontFamily]")
        assert style[0] == "rtl" and "Noto Naskh Arabic" in style[1]
    assert page.get_by_text("chrF++").count() >= 3
    _shoot(page, "compare-result")


def test_every_page_renders_and_is_screenshotted(page, server):
    _goto(page, server)
    for title, name in PAGES.items():
        page.get_by_role("link", name=title).first.click()
        page.wait_for_function(f"document.querySelector('h1') && document.querySelector('h1').innerText.includes("
                               f"{'Dialect decoupling' if name == 'home' else title!r})")
        _settle(page)
        if name in ("overlap", "results"):
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            page.wait_for_timeout(1000)
        _no_traceback(page)
        _shoot(page, name)


def _choose_single_run(page) -> None:
    """Pick 'Decoupled only' and wait until the script has seen it: the estimate stops saying
    'per run' (it does for a pair). A click that lands while the two-second progress fragment
    is re-running can be dropped by the browser, so it is tried again once."""
    radio = page.get_by_role("radio", name="Decoupled only")
    for _ in range(2):
        page.get_by_text("Decoupled only").click()
        _settle(page)
        try:
            page.wait_for_function("!document.body.innerText.includes('per run)')", timeout=15_000)
        except Exception:
            continue
        if radio.is_checked():
            return
    raise AssertionError("the 'Decoupled only' choice did not reach the app")


def test_launch_a_training_and_watch_it_progress(page, server):
    before = {r.id for r in list_runs()}
    _goto(page, server, "train")
    page.get_by_role("textbox", name="Data source").fill(TINY.source)
    page.get_by_role("combobox", name="Base model").click()  # the shipped default is listed first
    page.get_by_role("option", name="tiny", exact=True).click()
    _settle(page)
    page.get_by_role("spinbutton", name="Steps", exact=True).fill("400")
    page.keyboard.press("Tab")
    _settle(page)
    _choose_single_run(page)
    _no_traceback(page)
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
        _shoot(page, "train-progress")
        page.get_by_role("button", name="Cancel", exact=True).first.click()
        deadline = time.time() + 120
        while time.time() < deadline and run.state().get("state") not in ("cancelled", "finished", "failed"):
            time.sleep(1)
        assert run.state().get("state") in ("cancelled", "finished"), run.state()
        _no_traceback(page)
    finally:
        if run.state().get("state") in jobs.ACTIVE:
            jobs.cancel(run.id, wait_s=30)


@contextlib.contextmanager
def _fresh_server(models: Path, **env: str):
    """`streamlit run app.py` started for one test, on models folder `models`; yields its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env={**os.environ, "DD_MODELS_DIR": str(models), "DD_READ_ONLY": "", **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


APP_PAGES = ["Welcome", "Compare", "Train", "Overlap", "Results", "Data"]


def _nav_links(page) -> list[str]:
    """The sidebar's page titles (each link's last line; the first is its icon's name)."""
    return [t.strip().splitlines()[-1] for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


@pytest.mark.xfail(strict=True, reason="known gap: a fresh server's first visitor to /<page> gets Streamlit's "
                   "pages/-folder fallback; removing it needs pages/ renamed, and the folder name is fixed")
def test_the_first_visitor_of_a_fresh_server_sees_the_gate_in_the_apps_navigation(browser, tmp_path):
    """On a fresh server the first request is for /results: the gate shows inside the app's
    own navigation (its page titles, never the file names of a pages/ folder), and after
    the password the visitor is on Results. Also for a second visitor to another page."""
    with _fresh_server(tmp_path, DD_PASSWORD="s3cret") as url:
        for path, title in (("results", "Results"), ("overlap", "Overlap"), ("", "Dialect decoupling")):
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/{path}")
            page.wait_for_selector("input[type=password]", timeout=90_000)
            _settle(page)
            assert _nav_links(page) == APP_PAGES, _nav_links(page)
            assert not path or page.get_by_role("heading", name=title).count() == 0
            page.locator("input[type=password]").fill("s3cret")
            page.keyboard.press("Enter")
            page.locator("input[type=password]").wait_for(state="detached", timeout=60_000)
            page.get_by_role("heading", name=title).wait_for(timeout=60_000)
            _settle(page)
            assert page.url.rstrip("/") == f"{url}/{path}".rstrip("/"), page.url
            assert _nav_links(page) == APP_PAGES
            _no_traceback(page)
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
    with _fresh_server(tmp_path, DD_PASSWORD="s3cret") as url:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{url}/data")
        page.wait_for_selector("input[type=password]", timeout=90_000)
        page.locator("input[type=password]").fill("s3cret")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Data").wait_for(timeout=90_000)
        _settle(page)
        shown: list[str] = []
        hostile = "`x` **bold** [link](http://127.0.0.1:9/l) ![img](http://127.0.0.1:9/i.png) <b>html</b> $x^2$"
        for spec in ("csv:/etc/passwd", "madar:../../../etc", "csv:no-such-file.tsv", f"csv:{REPO}/app.py",
                     "madar:" + hostile, "hub:../../x", f"offline?{hostile}"):
            page.get_by_role("textbox", name="Corpus").fill(spec)
            page.keyboard.press("Enter")
            _settle(page)
            _no_traceback(page)
            shown.append(page.inner_text('[data-testid="stMain"]'))
        page.get_by_role("textbox", name="Corpus").fill("offline")
        page.keyboard.press("Enter")
        _settle(page)
        page.get_by_role("textbox", name="Contains (optional)").fill(hostile)
        page.keyboard.press("Enter")
        _settle(page)
        shown.append(page.inner_text('[data-testid="stMain"]'))
        page.get_by_role("link", name="Train").first.click()
        page.get_by_role("heading", name="Train").wait_for()
        _settle(page)
        for source in ("csv:/etc/passwd", f"madar:{tmp_path}", "madar:" + hostile):
            page.get_by_role("textbox", name="Data source").fill(source)
            page.keyboard.press("Enter")
            _settle(page)
            _no_traceback(page)
            shown.append(page.inner_text('[data-testid="stMain"]'))
        for title in ("Compare", "Overlap"):
            page.get_by_role("link", name=title).first.click()
            page.get_by_role("heading", name=title).wait_for()
            _settle(page)
            page.get_by_text("damaged run folder").click()  # open the list of damaged runs
            _settle(page)
            _no_traceback(page)
            shown.append(page.inner_text('[data-testid="stMain"]'))
        assert "state.json holds a list, not an object" in "\n".join(shown)
        for text in shown:
            for server_path in _server_paths(tmp_path):
                assert server_path not in text, (server_path, text[:1500])
        assert page.locator("img[src*='127.0.0.1:9'], a[href*='127.0.0.1:9']").count() == 0
        context.close()


def test_compare_with_a_steered_fourth_column(page, server):
    _goto(page, server)  # the app opens on Compare when runs exist
    assert page.inner_text("h1").strip() == "Compare"
    page.get_by_text("Add a fourth column: inference-time steering").click()
    _settle(page)
    page.get_by_text("Strength").wait_for()
    page.get_by_role("textbox", name="Sentence", exact=True).fill("أريد أن أشرب القهوة الآن")
    page.keyboard.press("Tab")
    _settle(page)
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text("one batched call").wait_for(timeout=120_000)
    _settle(page)
    _no_traceback(page)
    cards = page.query_selector_all(".dd-card")
    assert len(cards) == 4
    assert page.get_by_text(re.compile(r"^Steered decoupled: project, s=1")).count() == 1
    _shoot(page, "compare-steered")
