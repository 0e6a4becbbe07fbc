"""Train: a form to launch a baseline + decoupled pair (or one run) as background jobs, and
their live progress, the queue and a cancel button.

Everything shown is read from the run folders (state.json, metrics.jsonl), refreshed every
two seconds by a fragment, so the progress survives a reload or a second tab. Launching and
cancelling go through backend.jobs; nothing trains in this script's thread.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from backend import demo, jobs, memory, paths, safety, varieties
from backend.errors import UserError
from backend.runs import RunConfig, parse_setting, setting_fields
from pages import _ui as ui

ui.password_gate()  # here too: a fresh server's first visitor to /<page> runs this file without app.py

D = RunConfig()
METHODS = {
    "pair": ("Baseline and decoupled (a pair to compare)", ["baseline", "decoupled"]),
    "decoupled": ("Decoupled only", ["decoupled"]),
    "baseline": ("Baseline only (λ = 0)", ["baseline"]),
}
ACTIVE = ("queued", "running")


@st.cache_resource(max_entries=4, show_spinner="Reading the corpus…")
def _corpus_varieties(spec: str) -> list[str]:
    from backend.data import load_corpus

    return load_corpus(spec).filter(split="train").target_varieties()


def _bases() -> list[str]:
    found = paths.base_names()
    return (["default"] if "default" in found else []) + [b for b in found if b != "default"]


# --- the form: one control per RunConfig field, derived from its declaration ----------------
# A few fields have their own controls (method, dialects, source, base, name); every other
# field gets the control its type calls for, with the field's label, help and default. A
# model preset fills the base and its suggested settings (keys carry the preset, so choosing
# another one resets them).
CUSTOM = ("method", "source", "dialects", "base", "name")
MAIN = ("steps", "lam", "lora_rank", "layers")
CAPS = {"steps": "steps", "batch_size": "batch_size", "max_length": "max_length", "max_train_pairs": "train_pairs"}
FIELDS = {f.name: f for f in setting_fields()}


def _key(name: str, preset: memory.Preset | None) -> str:
    return f"train_{name}" + (f"_{preset.name}" if preset and name in preset.settings else "")


def _control(name: str, where, preset: memory.Preset | None, problems: list[str]):
    """The widget for RunConfig field `name`, and the value it gives (parsed, not yet checked)."""
    f = FIELDS[name]
    meta, key = f.metadata, _key(name, preset)
    default = preset.settings[name] if preset and name in preset.settings else getattr(D, name)
    if name == "lora_alpha":
        default = None  # RunConfig's rule: 2 x the LoRA rank unless set
    label, help_text = meta["label"], meta["help"][:1].upper() + meta["help"][1:] + "."
    optional = f.type.endswith("| None")
    if f.type == "bool":
        return where.checkbox(label, value=default, help=help_text, key=key)
    if meta.get("choices"):
        options = [None, *meta["choices"]] if optional else list(meta["choices"])
        return where.selectbox(label, options, index=options.index(default), help=help_text, key=key,
                               format_func=lambda v: "none" if v is None else str(v))
    if f.type in ("int", "int | None"):
        cap = CAPS.get(name)
        return where.number_input(label, min_value=None if meta["low"] is None else int(meta["low"]),
                                  max_value=safety.limit(cap) if cap else None, value=default, step=1,
                                  help=help_text, key=key, placeholder="none" if optional else None)
    if f.type == "float":
        return where.number_input(label, min_value=None if meta["low"] is None else float(meta["low"]),
                                  max_value=None if meta["high"] is None else float(meta["high"]),
                                  value=float(default), format="%g", help=help_text, key=key)
    shown = ",".join(map(str, default)) if isinstance(default, list) else (default or "")
    placeholder = "default: middle-to-upper" if name == "layers" else "none" if optional else None
    text = where.text_input(label, value=shown, placeholder=placeholder, help=help_text, key=key)
    try:
        return parse_setting(name, text)
    except UserError as e:
        problems.append(str(e))
        return default


if ui.read_only():
    st.info("This app is in read-only mode: training is turned off.")
    st.stop()

st.title("Train")
st.markdown("Fine-tune LoRA adapters on the base model: a **baseline** (plain fine-tuning) and a "
            "**decoupled** run (the same, plus the penalty that pushes dialect representations out of "
            "the MSA subspace). Runs start in the background, one after another.")

problems: list[str] = []
dialect_preset = st.selectbox("Dialect preset", ["(choose dialects yourself)", *varieties.PRESETS],
                              index=1 + list(varieties.PRESETS).index("the 25 MADAR cities"),
                              help="A starting set of dialects; you can add or remove some below.",
                              key="train_preset")
choices = [*varieties.CITY_CODES, *(g.code for g in varieties.GROUPS)]
initial = list(varieties.PRESETS.get(dialect_preset, ()))
dialects = st.multiselect("Dialects", choices, default=[c for c in initial if c in choices],
                          format_func=ui.variety_label, key=f"train_dialects_{dialect_preset}",
                          help="The varieties the adapters learn to write; MSA is always included as well.")
cols = st.columns(2)
source = cols[0].text_input("Data source", value=D.source, key="train_source",
                            help="offline: the corpus this project writes itself. Or a corpus inside the data "
                                 "roots, e.g. madar:/path/to/MADAR.").strip()
bases = _bases()
local = bases or ["default"]
presets = {f"{p.name} — {p.hub_id}": p for p in memory.PRESETS.values()}
base_choice = cols[1].selectbox("Base model", [*local, *presets, "another (folder or hub id)…"],
                                help="The pretrained model the adapters sit on: 'default' is the small model "
                                     "built from scratch for the demo; the presets are real models from the "
                                     "hub (downloaded when training starts) with settings suggested for them.",
                                key="train_base")
model_preset = presets.get(base_choice)
base = model_preset.hub_id if model_preset else base_choice
if base_choice.startswith("another"):
    base = cols[1].text_input("Base model folder or hub id", key="train_base_other").strip()
method = st.radio("What to train", list(METHODS), format_func=lambda k: METHODS[k][0], horizontal=True,
                  key="train_method")
values = {}
for col, name in zip(st.columns(len(MAIN)), MAIN):
    values[name] = _control(name, col, model_preset, problems)
with st.expander("Advanced settings"):
    cols = st.columns(4)
    rest = [n for n in FIELDS if n not in CUSTOM and n not in MAIN]
    for i, name in enumerate(rest):
        values[name] = _control(name, cols[i % 4], model_preset, problems)
name = st.text_input("Name (optional)", key="train_name", max_chars=40,
                     help="A short label that appears in the run's folder name.")

configs: list[RunConfig] = []
resolved_base = base
try:
    if not problems:
        if not base:
            raise UserError("type a base model folder or hub id")
        for m in METHODS[method][1]:
            configs.append(RunConfig(method=m, source=source, dialects=list(dialects), base=base,
                                     name=name.strip(), **values))
        resolved_base = safety.check_base_and_layers(base, configs[0].layers)
except UserError as e:
    configs = []
    problems.append(str(e))

if configs and source:
    try:
        available = _corpus_varieties(safety.resolve_source_spec(source))
        missing = [d for d in dialects if d not in available]
        if missing:
            problems.append(f"{source} has no training data for {', '.join(missing)}; it has "
                            f"{', '.join(v for v in available if v != 'MSA') or 'no dialect'}")
    except UserError as e:
        problems.append(str(e))

if configs:
    with ui.shown_errors("Estimating the duration"):
        per_run, basis = demo.estimate_run_seconds(configs[0])
        total = per_run * len(configs)
        st.markdown(f"**Estimated duration:** about {demo.format_duration(total)}"
                    + (f" ({demo.format_duration(per_run)} per run)" if len(configs) > 1 else ""))
        st.caption(f"Estimate: {basis}.")
        c = configs[0]  # what will be queued, whatever a number field still shows while it is being typed
        st.caption(ui.md(f"Will train {c.steps} steps · batch {c.batch_size} · learning rate {c.learning_rate:g} · "
                         f"λ {configs[-1].lam:g} · LoRA rank {c.lora_rank} · layers "
                         f"{', '.join(map(str, c.layers)) if c.layers else 'middle-to-upper (automatic)'} · "
                         f"probe every {c.probe_every} · seed {c.seed} · LoRA alpha {c.lora_alpha} · "
                         f"dtype {c.dtype}" + (f" · {c.quantize}" if c.quantize else "")
                         + (" · gradient checkpointing" if c.gradient_checkpointing else "")))
    with ui.shown_errors("Estimating the GPU memory"):
        est = memory.estimate_for(replace(configs[0], base=resolved_base))
        if est is None:
            st.markdown("**GPU memory:** cannot be estimated offline for this hub id (its architecture is "
                        f"not known here); the presets ({', '.join(memory.PRESETS)}) can be.")
        else:
            st.markdown(f"**GPU memory:** {est.summary()}.")
            st.caption(f"From {est.basis}: weights, LoRA and Adam state, activations, the probe's hidden states.")
for problem in problems:
    st.error(ui.message(problem))

if st.button("Start training", type="primary", disabled=bool(problems) or not configs, key="train_launch"):
    launched = []
    with ui.shown_errors("Starting the training"):
        for config in configs:
            launched.append(jobs.launch(config).id)
    if launched:
        st.success(f"Queued {', '.join(launched)}. Progress appears below; you can reload or leave this page.")


# --- live progress and the queue ----------------------------------------------------------
def _progress_card(job: dict) -> None:
    run_id = str(job.get("id"))
    progress = job.get("progress") or {}
    total = progress.get("steps") or job.get("steps") or 0
    step = progress.get("step") or 0
    state = job.get("state")
    title = f"{job.get('method', '?')} · {','.join(job.get('dialects') or [])} · {job.get('steps', '?')} steps"
    with st.container(border=True):
        where = f" (#{job['position']} in the queue)" if job.get("position") else ""
        st.markdown(f"**{ui.md(title)}** — {ui.md(run_id)} — {ui.md(state)}{where}")
        if state == "queued":
            st.progress(0.0, text="waiting for the runs before it")
        else:
            st.progress(min(1.0, step / total) if total else 0.0,
                        text=f"step {step} of {total}" if total else "starting (loading the model and data)")
        cols = st.columns(5)
        cols[0].metric("step", f"{step}/{total}" if total else "–")
        cols[1].metric("loss", ui.fmt(progress.get("loss"), 3))
        cols[2].metric("penalty", ui.fmt(progress.get("penalty"), 3))
        cols[3].metric("overlap", ui.fmt(progress.get("overlap"), 3),
                       help="Mean share of dialect-state energy inside the MSA subspace (lower: more decoupled).")
        eta = progress.get("eta_s")
        cols[4].metric("ETA", demo.format_duration(eta) if eta is not None else "–")
        if job.get("stalled"):
            st.warning("No heartbeat for a while: the process may be stuck or the machine busy.")
        if job.get("cancel_requested"):
            st.caption("Cancelling…")
        elif st.button("Cancel", key=f"cancel_{run_id}"):
            with ui.shown_errors("Cancelling"):
                jobs.cancel(run_id)
                st.toast(f"Asked {run_id} to stop.")


@st.fragment(run_every=2)
def _live() -> None:
    all_jobs = jobs.list_jobs()
    active = [j for j in all_jobs if j.get("state") in jobs.ACTIVE]
    st.subheader("Running and queued")
    if not active:
        st.caption("Nothing is running.")
    for job in sorted(active, key=lambda j: (j.get("state") != "running", j.get("position") or 0)):
        with ui.shown_errors(f"Showing {job.get('id')}"):
            _progress_card(job)
    done = [j for j in all_jobs if j.get("state") not in jobs.ACTIVE][:15]
    if done:
        st.subheader("Recent runs")
        rows = [{"run": j.get("id"), "method": j.get("method"), "state": j.get("state"),
                 "step": (j.get("progress") or {}).get("step"), "steps": j.get("steps"),
                 "loss": (j.get("progress") or {}).get("loss"), "overlap": (j.get("progress") or {}).get("overlap"),
                 "error": paths.redact(j.get("error") or j.get("reason") or "")} for j in done]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        resumable = [j["id"] for j in done if j.get("state") in ("failed", "cancelled") and j.get("has_checkpoint")]
        if resumable:
            cols = st.columns([3, 1])
            pick = cols[0].selectbox("Resume a stopped run from its last checkpoint", resumable,
                                     key="train_resume_pick")
            if cols[1].button("Resume", key="train_resume"):
                with ui.shown_errors("Resuming"):
                    jobs.resume(pick)
                    st.toast(f"Resuming {pick}.")


with ui.shown_errors("Reading the job queue"):
    _live()
