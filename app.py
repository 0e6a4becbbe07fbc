"""Dialect decoupling: the Streamlit app. Navigation and shared page setup only.

Run with `streamlit run app.py`. Every page reads its state from the run folders under
DD_MODELS_DIR (default: models/), so a reload or a second tab shows the same thing.
DD_READ_ONLY=1 hides the Train page and the demo build button (for a public demo).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.errors import UserError  # noqa: E402
from pages import _ui as ui  # noqa: E402

ui.leave_pages_fallback()  # a fresh server's first request: through this navigation, not pages/

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

st.set_page_config(page_title="Dialect decoupling", page_icon=":material/translate:", layout="wide")
st.markdown(ui.CSS, unsafe_allow_html=True)


def _has_pairs() -> bool:
    try:
        from backend.compare import find_pairs

        return bool(find_pairs())
    except Exception:  # noqa: BLE001 - navigation must render even with broken run folders
        ui.log.exception("could not list run pairs")
        return False


ready = _has_pairs()
pages = [
    # Welcome stays the default page so every page keeps its own URL (a bookmarked /compare
    # works whatever is built); a visitor arriving at "/" once models exist is sent to Compare.
    st.Page("pages/home.py", title="Welcome", icon=":material/home:", default=True),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/browse.py", title="Browse", icon=":material/table_rows:"),
]
if not ui.read_only():  # rating writes answers to the server, as training does
    pages.append(st.Page("pages/rate.py", title="Rate", icon=":material/how_to_vote:"))
    pages.append(st.Page("pages/train.py", title="Train", icon=":material/model_training:"))
pages += [
    st.Page("pages/overlap.py", title="Overlap", icon=":material/stacked_line_chart:"),
    st.Page("pages/results.py", title="Results", icon=":material/bar_chart:"),
    st.Page("pages/data.py", title="Data", icon=":material/table_view:"),
]

page = st.navigation(pages)
# A live demo's password (secrets.toml or DD_PASSWORD; no gate when unset), asked after the
# navigation is built: the visitor sees it on the page they asked for, and lands there.
ui.password_gate()
if not st.session_state.get("dd_arrived"):
    st.session_state["dd_arrived"] = True
    if ready and page.url_path == "":
        st.switch_page("pages/compare.py")
try:
    page.run()
except UserError as e:
    st.error(ui.message(e))
except Exception as e:  # noqa: BLE001 - no traceback ever reaches the browser
    ui.log.exception("page %s failed", page.title)
    st.error(ui.unexpected_message(e))
