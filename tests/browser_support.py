"""What the browser tests (test_browser.py, test_browser_workbench.py) share: `streamlit run
app.py` on a free local port, and waits and checks for pages driven by Playwright. The
`browser`, `server` and `page` fixtures built on these are in conftest.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "artifacts" / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(models: Path, log: Path | None = None, **env: str) -> Iterator[str]:
    """`streamlit run app.py` on models folder `models` (output to `log`, else discarded) until
    its health check answers; yields its URL and stops it (the whole process group) after."""
    port = free_port()
    out = open(log, "w", encoding="utf-8") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env={**os.environ, "DD_MODELS_DIR": str(models), "DD_READ_ONLY": "", **env},
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start" + (f"; see {log.relative_to(REPO)}" if log else ""))
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        if log:
            out.close()


def settle(page) -> None:
    """Wait until Streamlit has finished running the script (no 'Running...' indicator)."""
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000)


def goto(page, server: str, path: str = "", heading: str | None = None) -> None:
    """Open `path` and wait for the page's title (`heading`, else any h1) and a finished run."""
    page.goto(f"{server}/{path}")
    if heading:
        page.get_by_role("heading", name=heading).wait_for(timeout=90_000)
    else:
        page.wait_for_selector("h1", timeout=90_000)
    settle(page)


def no_traceback(page) -> None:
    """Nothing failed on the page: no traceback, error boundary, exception element or lost page."""
    body = page.inner_text("body")
    assert "Traceback" not in body and "Something went wrong" not in body, body[:2000]
    assert "Page not found" not in body, body[:2000]
    assert not page.query_selector('[data-testid="stException"]')


def shoot(page, name: str) -> None:
    """A screenshot of the whole page into artifacts/screenshots/: Streamlit scrolls inside its
    main container, so the viewport is made as tall as that container's content first."""
    height = page.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], "
                           "[data-testid=\"stAppViewContainer\"]')].map(e => e.scrollHeight), 800)")
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(800)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    page.set_viewport_size({"width": width, "height": 1100})
