"""Welcome: what the app is for, and the one button that builds the demo models.

The build runs in a detached process (backend.demo); this page only reads
models/demo/status.json, so its progress survives a reload, a second tab or a restart.
"""

from __future__ import annotations

import time

import streamlit as st

from backend import demo
from pages import _ui as ui

ui.password_gate()  # here too: a fresh server's first visitor to /<page> runs this file without app.py

st.title("Dialect decoupling")
st.markdown(
    "Small language models fine-tuned to write Arabic dialects tend to drift towards Modern "
    "Standard Arabic (MSA). This app trains two LoRA adapters on the same data: a **baseline** "
    "and a **decoupled** one whose dialect representations are pushed out of an MSA subspace "
    "estimated during training (arXiv 2508.12803), then lets you compare what they write."
)

ready = False  # stays False when listing fails
with ui.shown_errors("Listing the trained models"):
    ready = demo.demo_ready()
    if ready:
        st.success("Trained models are ready.")
        st.page_link("pages/compare.py", label="Compare their outputs side by side", icon=":material/compare_arrows:")
        st.page_link("pages/browse.py", label="Browse their test outputs, MSA words marked", icon=":material/table_rows:")
        if not ui.read_only():
            st.page_link("pages/rate.py", label="Rate their outputs blind", icon=":material/how_to_vote:")


STAGE_LABELS = {
    "base": "Pretraining the base model",
    "baseline": "Training the baseline adapter",
    "decoupled": "Training the decoupled adapter",
    "evaluate": "Evaluating both adapters and measuring entanglement",
}


def _show_status(status: dict, where) -> None:
    """Progress of a build into `where` (an st.status box; writing through it, not inside a
    `with` block, keeps the box in its running state)."""
    fraction = min(1.0, max(0.0, float(status.get("fraction") or 0.0)))
    stages = status.get("stages") or []
    stage = status.get("stage")
    label = STAGE_LABELS.get(stage, "Starting")
    count = f" (stage {stages.index(stage) + 1} of {len(stages)})" if stage in stages else ""
    step, steps = status.get("step"), status.get("steps")
    counter = f" — step {step} of {steps}" if step is not None and steps and steps > 1 else ""
    where.progress(fraction, text=f"{label}{count}{counter}")
    facts = [f"{100 * fraction:.0f}% done"]
    started, estimate = status.get("started"), status.get("estimate_s")
    if isinstance(started, (int, float)) and fraction >= 0.05:
        elapsed = time.time() - started
        facts.append(f"about {demo.format_duration(elapsed / fraction * (1 - fraction))} left")
    elif estimate:
        facts.append(f"about {demo.format_duration(estimate)} in all")
    where.caption(" · ".join(facts) + (f" · {status['message']}" if status.get("message") else ""))
    where.caption("The build runs in the background: you can reload this page, close the tab or come back later.")


@st.fragment(run_every=2)
def _live() -> None:
    status = demo.demo_status()
    state = status.get("state")
    if state in ("starting", "running"):
        _show_status(status, st.status("Building the demo models…", state="running", expanded=True))
        if not ui.read_only() and st.button("Cancel the build", key="demo_cancel"):
            with ui.shown_errors("Cancelling"):
                demo.cancel_demo()
                st.toast("Asked the build to stop; a later build resumes where it stopped.")
        st.session_state["demo_was_running"] = True
    elif st.session_state.pop("demo_was_running", False):
        st.rerun()  # the build ended: rerun the whole page, which then links to Compare


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
            st.error(f"The last demo build stopped: {ui.message(status.get('error') or 'no reason recorded')}")
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
