"""Welcome: what the app is for, and the one button that builds the demo models.

The build runs in a detached process (backend.demo); this page only reads
models/demo/status.json, so its progress survives a reload, a second tab or a restart.
"""

from __future__ import annotations

import streamlit as st

from app_pages import _ui as ui
from backend import demo

st.title("Dialect decoupling")
st.markdown(
    "Small language models fine-tuned to write Arabic dialects tend to drift towards Modern "
    "Standard Arabic (MSA). This app trains two LoRA adapters on the same data: a **baseline** "
    "and a **decoupled** one whose dialect representations are pushed out of an MSA subspace "
    "estimated during training (arXiv 2508.12803), then lets you compare what they write."
)

with ui.shown_errors("Listing the trained models"):
    ready = demo.demo_ready()
    if ready:
        st.success("Trained models are ready.")
        st.page_link("app_pages/compare.py", label="Compare their outputs side by side", icon="⚖️")


def _show_status(status: dict) -> None:
    state = status.get("state")
    fraction = float(status.get("fraction") or 0.0)
    step, steps = status.get("step"), status.get("steps")
    counter = f" — step {step} of {steps}" if step is not None and steps and steps > 1 else ""
    stages = status.get("stages") or []
    stage = status.get("stage")
    where = f"stage {stages.index(stage) + 1} of {len(stages)}: " if stage in stages else ""
    st.progress(min(1.0, max(0.0, fraction)), text=f"{where}{status.get('message', '')}{counter}")
    if state in ("starting", "running"):
        eta = status.get("eta_s")
        st.caption("The build runs in the background: you can reload this page or close the tab."
                   + (f" This stage ends in about {demo.format_duration(eta)}." if eta else ""))


@st.fragment(run_every=2)
def _live() -> None:
    status = demo.demo_status()
    state = status.get("state")
    if state in ("starting", "running"):
        with st.status("Building the demo models…", expanded=True):
            _show_status(status)
        if not ui.read_only() and st.button("Cancel the build", key="demo_cancel"):
            with ui.shown_errors("Cancelling"):
                demo.cancel_demo()
                st.toast("Asked the build to stop.")
        st.session_state["demo_was_running"] = True
    elif st.session_state.pop("demo_was_running", False):
        st.rerun()  # the build ended: rerun the whole app so navigation opens on Compare


st.subheader("Demo models")
with ui.shown_errors("Reading the demo build status"):
    status = demo.demo_status()
    state = status.get("state")
    if state in ("starting", "running"):
        _live()
    else:
        if state == "finished":
            st.success("The demo models were built: base model, baseline adapter and decoupled adapter.")
        elif state in ("failed", "interrupted"):
            st.error(f"The last demo build stopped: {status.get('error') or 'no reason recorded'}")
            tail = demo.log_tail(12)
            if tail:
                with st.expander("Last lines of the build log"):
                    st.code(tail, language=None)
        elif state == "cancelled":
            st.warning("The last demo build was cancelled.")
        if not (ready and state == "finished"):
            options = demo.DemoOptions()
            estimate = demo.format_duration(demo.estimate_demo_seconds(options))
            st.markdown(
                f"Build a small base model from scratch on the offline corpus, then a baseline and a "
                f"decoupled adapter for {len(options.dialects)} dialects, and evaluate them. "
                f"This takes about **{estimate}** on this machine and runs in the background."
            )
            if ui.read_only():
                st.info("This app is in read-only mode; build the demo in a terminal with "
                        "`python -m backend demo`.")
            elif st.button("Build the demo models", type="primary", key="demo_build"):
                with ui.shown_errors("Starting the build"):
                    demo.start_background(options)
                    st.session_state["demo_was_running"] = True
                    st.rerun()
        else:
            st.caption("To rebuild, delete the demo runs and run `python -m backend demo` in a terminal.")

st.subheader("What each page does")
st.markdown(
    "- **Compare**: one sentence through the base model, the baseline and the decoupled adapter, "
    "with the dialect identifier's verdict and chrF++.\n"
    + ("" if ui.read_only() else
       "- **Train**: fine-tune your own pair of adapters (choose dialects, data, steps) and watch it train.\n")
    + "- **Overlap**: how much of the dialect representations lies in the MSA subspace, layer by layer, "
    "over training.\n"
    "- **Results**: chrF++ per dialect, baseline against decoupled, with significance, from evaluated "
    "experiments.\n"
    "- **Data**: browse a corpus by variety and split.\n\n"
    "In a terminal, `python -m backend --help` does everything these pages do."
)
