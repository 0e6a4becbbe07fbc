"""Shared page helpers: Arabic right-to-left rendering, error boxes, labels, read-only mode.

Not a page (st.navigation in app.py lists the pages explicitly). Nothing here loads a model.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import logging
import math
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from backend import paths, varieties
from backend.errors import UserError

if TYPE_CHECKING:
    from backend import browse, compare

log = logging.getLogger("dialect_decoupling.app")

ARABIC_FONTS = '"Noto Naskh Arabic", "Noto Sans Arabic", "Amiri", "KacstOne", "Arial", sans-serif'

CSS = f"""
<style>
.dd-rtl {{
  direction: rtl; text-align: right; unicode-bidi: isolate;
  font-family: {ARABIC_FONTS}; font-size: 1.3rem; line-height: 1.9;
}}
.dd-card {{
  border: 1px solid rgba(128, 128, 128, 0.35); border-radius: 0.5rem;
  padding: 0.5rem 0.9rem; min-height: 3.4rem; margin-bottom: 0.4rem;
}}
.dd-empty {{ color: rgba(128, 128, 128, 0.9); font-style: italic; font-size: 1rem; direction: ltr; text-align: left; }}
.dd-table {{ width: 100%; border-collapse: collapse; }}
.dd-table td, .dd-table th {{ border-bottom: 1px solid rgba(128, 128, 128, 0.25); padding: 0.35rem 0.5rem;
  vertical-align: top; }}
.dd-table th {{ text-align: left; font-weight: 600; }}
.dd-table td.dd-rtl {{ font-size: 1.1rem; }}
.dd-msa {{ text-decoration: underline wavy #d9534f; text-decoration-skip-ink: none; text-underline-offset: 0.35em; }}
.dd-diff {{ background: rgba(47, 111, 223, 0.16); border-radius: 0.2rem; }}
.stTextArea textarea {{ unicode-bidi: plaintext; font-size: 1.1rem; }}
.stTextInput input {{ unicode-bidi: plaintext; }}
</style>
"""


def read_only() -> bool:
    """DD_READ_ONLY=1: a public demo that can compare and browse but not train or build."""
    return os.environ.get("DD_READ_ONLY", "").strip().lower() in {"1", "true", "yes", "on"}


def demo_password() -> str | None:
    """The password a live demo asks for: `password` in .streamlit/secrets.toml, else the
    DD_PASSWORD environment variable; None (no gate) when neither is set."""
    try:
        value = st.secrets.get("password")
    except Exception:  # noqa: BLE001 - no secrets file is the normal case
        value = None
    value = value or os.environ.get("DD_PASSWORD")
    return str(value) if value else None


def leave_pages_fallback() -> None:
    """Until some script calls st.navigation, Streamlit serves a fresh server's requests in
    its old `pages/`-folder mode (file names as navigation, page files run without app.py).
    A script that finds itself in that mode switches it off and reruns: the same URL then
    goes through app.py's navigation, layout and gate (the page hash is the URL path, so the
    visitor stays on the page asked for)."""
    if PagesManager.uses_pages_directory and not st.session_state.get("dd_left_fallback"):
        # Once per session: AppTest sets the mode back before each of its runs, and a rerun
        # on every run would drop the click that started it.
        st.session_state["dd_left_fallback"] = True
        PagesManager.uses_pages_directory = False
        st.rerun()


def password_gate() -> None:
    """Stop the script until this browser session has typed the demo password."""
    leave_pages_fallback()
    expected = demo_password()
    if expected is None or st.session_state.get("dd_authenticated"):
        return
    st.title("Dialect decoupling")
    typed = st.text_input("Password", type="password", key="dd_password")
    if typed:
        if hmac.compare_digest(typed.encode("utf-8"), expected.encode("utf-8")):
            st.session_state["dd_authenticated"] = True
            st.session_state.pop("dd_password", None)
            st.rerun()
        st.error("Wrong password.")
    st.stop()


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-!|<>~$])")


def md(text: object) -> str:
    """Text from a user, a file or an error, escaped for the markdown that st.markdown,
    st.caption, st.error... render: no bold, link, image, code span or math gets through."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def message(error: BaseException | str) -> str:
    """An error's one line for the browser: absolute server paths shown relative to the
    project (backend.paths.redact), markdown escaped."""
    return md(paths.redact(str(error)))


def rtl_html(text: str, css_class: str = "", tag: str = "div") -> str:
    return f'<{tag} class="dd-rtl {css_class}" dir="rtl" lang="ar">{html.escape(text)}</{tag}>'


def rtl(text: str, card: bool = False) -> None:
    """Arabic text, right to left, in a font that renders it; an empty text says so."""
    if not text.strip():
        st.markdown('<div class="dd-card dd-empty">(empty output)</div>' if card else "", unsafe_allow_html=True)
        return
    st.markdown(rtl_html(text, "dd-card" if card else ""), unsafe_allow_html=True)


def variety_label(code: str) -> str:
    try:
        return varieties.get(code).label
    except UserError:
        return code


@contextlib.contextmanager
def shown_errors(what: str = "") -> Iterator[None]:
    """Show a UserError as a short st.error and anything unexpected as a short message (the
    traceback goes to the server log); the rest of the page keeps rendering."""
    try:
        yield
    except UserError as e:
        st.error(f"{what}: {message(e)}" if what else message(e))
    except Exception as e:  # noqa: BLE001 - the page must keep working
        log.exception("unexpected error%s", f" ({what})" if what else "")
        st.error(unexpected_message(e, what))


def damaged_runs_note() -> None:
    """An expander listing the damaged run folders (never offered) and what is wrong with each."""
    from backend.compare import damaged_runs

    damaged = damaged_runs()
    if damaged:
        with st.expander(f"{len(damaged)} damaged run folder{'s' if len(damaged) > 1 else ''}, not offered"):
            st.markdown("\n".join(f"- {md(run_id)}: {message(why.removeprefix(f'run {run_id}: '))}"
                                  for run_id, why in damaged))


@st.cache_data(max_entries=8, show_spinner=False)
def _pair_table(key: str, stamp: tuple) -> browse.Table:
    from backend import browse, compare

    pair = compare.get_pair(key)
    return browse.pair_table(pair.baseline, pair.decoupled)


def _outputs_stamp(pair: compare.RunPair) -> tuple:
    """The outputs files' modification times: a re-evaluated (or newly steered) run is read again."""
    files = [f for run in (pair.baseline, pair.decoupled) for f in sorted(run.dir.glob("outputs*.jsonl"))]
    return tuple((f.name, f.stat().st_mtime_ns) for f in files if f.is_file())


def choose_pair_table(key: str, none_yet: str, home_link: bool = False) -> tuple[compare.RunPair, browse.Table]:
    """The "Run pair" choice of Browse and Rate (widget `key`) and that pair's evaluated test
    outputs, read from disk once per change. Stops the page with `none_yet` when there is no
    finished pair, and with the reason when one of the two runs is not evaluated."""
    from backend import compare

    pairs = compare.find_pairs()
    if not pairs:
        st.info(none_yet)
        if home_link:
            st.page_link("pages/home.py", label="Welcome", icon=":material/home:")
        st.stop()
    by_key = {p.key: p for p in pairs}
    pair_key = st.selectbox("Run pair", list(by_key), format_func=lambda k: by_key[k].label, key=key)
    pair = by_key[pair_key]
    try:
        return pair, _pair_table(pair_key, _outputs_stamp(pair))
    except UserError as e:
        st.info(message(e))
        st.stop()


def unexpected_message(error: BaseException, what: str = "") -> str:
    """Only the error's type: its text may hold paths or data a public demo should not show."""
    prefix = f"{what} failed" if what else "Something went wrong on this page"
    return f"{prefix} ({type(error).__name__}). The details are in the server log."


def number(value: object) -> float | None:
    """A finite number from a file's value, or None (text, lists, true/false, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: float | None, digits: int = 2, none: str = "–") -> str:
    if value is None:
        return none
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return none


if __name__ == "__main__":  # this file requested as a page (/ui) in the fallback mode
    leave_pages_fallback()
