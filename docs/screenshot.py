"""Take the README's screenshot of the Compare page from the models under DD_MODELS_DIR.

    python docs/screenshot.py [--text "..."] [--target Cairo] [--pair LABEL_PART] [--reference "..."]

Starts `streamlit run app.py` on a free local port, opens it in Debian's headless Chromium
(through the playwright package, never `playwright install`), compares one sentence on the
newest run pair and saves the main column as a PNG.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settle(page) -> None:
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", default="هل يوجد مطعم قريب من الفندق؟ أريد أن آكل الآن")
    ap.add_argument("--target", default="Cairo")
    ap.add_argument("--pair", default="", help="part of the run pair's label to pick (default: the newest pair)")
    ap.add_argument("--reference", default="", help="a reference translation, for the chrF++ shown")
    ap.add_argument("--out", default=str(REPO / "docs" / "compare.png"))
    args = ap.parse_args()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
        cwd=REPO, env={**os.environ, "DD_READ_ONLY": ""}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="en-US")
            page.set_default_timeout(120_000)
            page.goto(url)
            page.wait_for_selector("h1")
            _settle(page)
            if args.pair:
                page.get_by_test_id("stSelectbox").nth(0).click()
                page.get_by_role("option").filter(has_text=args.pair).first.click()
                _settle(page)
            page.get_by_test_id("stSelectbox").nth(1).click()
            page.get_by_role("option", name=args.target).first.click()
            _settle(page)
            page.get_by_role("textbox", name="Sentence", exact=True).fill(args.text)
            page.keyboard.press("Tab")
            _settle(page)
            if args.reference:
                page.get_by_role("textbox", name=re.compile("^Reference")).fill(args.reference)
                page.keyboard.press("Tab")
                _settle(page)
            page.get_by_role("button", name="Compare", exact=True).click()
            page.get_by_text("one batched call").wait_for()
            _settle(page)
            page.get_by_role("button", name="Compare", exact=True).click()  # a warm run for the timing shown
            _settle(page)
            page.get_by_text("one batched call").wait_for()
            page.wait_for_timeout(800)
            page.get_by_test_id("stMainBlockContainer").screenshot(path=args.out)
            browser.close()
        print(f"saved {args.out}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
