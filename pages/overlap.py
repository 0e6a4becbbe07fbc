"""Overlap: how much of the dialect representations lies in the MSA subspace.

During training (metrics.jsonl of both runs, logged at every probe update): the energy
fraction of dialect states inside the online MSA subspace per layer, the probe's accuracy
and code length. After training (an experiment's entanglement measurements, when one was
evaluated for this pair): principal angles and a shared 2-D projection of MSA and dialect
states for the base model, the baseline and the decoupled adapter.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from backend import compare
from backend.errors import UserError
from pages import _ui as ui

ui.password_gate()  # here too: a fresh server's first visitor to /<page> runs this file without app.py

SYSTEM_ORDER = ["base", "baseline", "decoupled"]


def _per_layer(pair: compare.RunPair, key: str) -> pd.DataFrame:
    curves = compare.pair_curves(pair, key)  # on the layers both runs measured
    df = pd.DataFrame(curves.rows, columns=["run", "step", "layer", "value"])
    df["layer"] = "layer " + df["layer"].astype(str)
    df.attrs["note"] = curves.note
    return df


def _line(df: pd.DataFrame, title: str, y: str):
    fig = px.line(df, x="step", y="value", color="layer", line_dash="run", markers=True,
                  labels={"value": y, "step": "training step"}, title=title,
                  line_dash_map={"baseline": "dash", "decoupled": "solid"})
    fig.update_layout(legend_title_text="", height=380, margin={"t": 50, "b": 10})
    return fig


st.title("Overlap")
st.markdown("How entangled the dialect representations are with MSA, layer by layer: the baseline "
            "(λ = 0, dashed) against the decoupled run (solid).")

pairs = compare.find_pairs()
ui.damaged_runs_note()
if not pairs:
    st.info("There is no finished run pair yet: build the demo models on the Welcome page or train a pair.")
    st.stop()
by_key = {p.key: p for p in pairs}
key = st.selectbox("Run pair", list(by_key), format_func=lambda k: by_key[k].label)
pair = by_key[key]

st.subheader("During training")
with ui.shown_errors("Reading the training metrics"):
    for note in compare.measurement_notes(pair):
        st.caption(note)
    energy = _per_layer(pair, "overlap")
    if energy.attrs.get("note"):
        st.info(energy.attrs["note"])
    if energy.empty:
        st.warning("These runs logged no overlap figures (metrics.jsonl is missing or has no probe updates).")
    else:
        st.plotly_chart(_line(energy, "MSA-subspace energy of dialect states", "energy fraction in the MSA subspace"))
        st.caption("The share of a dialect state's (centred) energy inside the MSA subspace the online probe "
                   "estimates; the decoupling penalty lowers exactly this. The baseline measures it without "
                   "acting on it.")
    cols = st.columns(2)
    acc = _per_layer(pair, "probe_acc")
    if not acc.empty:
        cols[0].plotly_chart(_line(acc, "Probe accuracy (MSA vs dialects)", "accuracy"))
    bits = []
    for kind in ("msa", "dialect"):
        df = _per_layer(pair, f"code_bits_{kind}")
        if not df.empty:
            df["layer"] = df["layer"] + f" · {kind.upper() if kind == 'msa' else 'dialect'}"
            bits.append(df)
    if bits:
        cols[1].plotly_chart(_line(pd.concat(bits), "Probe code length", "bits per token"))
    if acc.empty and not bits:
        st.caption("No probe accuracy or code length was logged by these runs.")

st.subheader("After training")
found = None
with ui.shown_errors("Reading the experiments"):
    found = compare.experiment_for(pair)
ent = (found[1].get("entanglement") if found else None) or {}
systems = ent.get("systems") if isinstance(ent, dict) else None
if not systems:
    st.info(
        "No entanglement measurements for this pair yet (principal angles, CKA, the 2-D projection). "
        "They come from evaluating the pair as an experiment, for example "
        "`python -m backend experiment` (which also builds the runs) or by evaluating these two runs; "
        "then reload this page."
    )
    st.stop()

st.caption(ui.md(f"From experiment {found[0]}: {ent.get('n_pairs', '?')} held-out parallel pairs, "
                 f"subspaces of rank ≤ {ent.get('k', '?')}."))
try:
    rows, angles = [], []
    for system, data in systems.items():
        for layer, figures in (data.get("layers") or {}).items():
            rows.append({"system": system, "layer": f"layer {layer}", **{
                k: ui.number(figures.get(k)) for k in ("energy_probe", "energy_pca", "energy_random", "probe_accuracy",
                                            "code_bits_per_token", "mean_angle", "cka")}})
            for i, angle in enumerate(figures.get("principal_angles") or []):
                angles.append({"system": system, "layer": f"layer {layer}", "index": i + 1, "angle": ui.number(angle)})
    table = pd.DataFrame(rows)
except (AttributeError, TypeError) as e:
    raise UserError(f"experiment {found[0]}: the entanglement data is malformed ({e})") from None

if not table.empty:
    order = {"system": [s for s in SYSTEM_ORDER if s in set(table["system"])]}
    cols = st.columns(2)
    fig = px.bar(table, x="layer", y="energy_probe", color="system", barmode="group", category_orders=order,
                 title="MSA-subspace energy of dialect states", labels={"energy_probe": "energy fraction"})
    cols[0].plotly_chart(fig)
    fig = px.bar(table, x="layer", y="cka", color="system", barmode="group", category_orders=order,
                 title="Linear CKA between parallel MSA and dialect states", labels={"cka": "CKA"})
    cols[1].plotly_chart(fig)
if angles:
    df = pd.DataFrame(angles)
    fig = px.line(df, x="index", y="angle", color="system", facet_col="layer", markers=True,
                  category_orders={"system": SYSTEM_ORDER},
                  labels={"index": "principal angle #", "angle": "degrees"},
                  title="Principal angles between the dialect and MSA subspaces (90° = orthogonal)")
    st.plotly_chart(fig)

projection = ent.get("projection") if isinstance(ent.get("projection"), dict) else {}
points = pd.DataFrame([p for p in projection.get("points") or [] if isinstance(p, dict)
                       and ui.number(p.get("x")) is not None and ui.number(p.get("y")) is not None],
                      columns=["x", "y", "variety", "kind", "system", "pair_id"])
if points.empty:
    st.caption("This experiment has no 2-D projection.")
else:
    var = projection.get("explained_variance")
    var = [ui.number(v) for v in var] if isinstance(var, list) else []
    axis = [f"PC{i + 1}" + (f" ({100 * var[i]:.0f}% of the base model's variance)"
                            if i < len(var) and var[i] is not None else "")
            for i in range(2)]
    fig = px.scatter(points, x="x", y="y", color="variety", symbol="kind", facet_col="system",
                     category_orders={"system": SYSTEM_ORDER}, hover_data=["pair_id"],
                     labels={"x": axis[0], "y": axis[1]},
                     title=f"MSA and dialect sentence states at layer {projection.get('layer', '?')}, "
                           "on the base model's two principal axes")
    fig.update_traces(marker={"size": 7, "opacity": 0.75})
    st.plotly_chart(fig)
with st.expander("The figures as a table"):
    st.dataframe(table, hide_index=True)
