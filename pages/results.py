"""Results: chrF++ per dialect, baseline against decoupled, from an evaluated experiment.

Reads models/experiments/<id>/results.json (written by the evaluation); a corrupt file is a
message, and the other experiments stay selectable. An experiment over several seeds shows
chrF++ as mean ± sd over seeds and each seed's delta; files written before seeds existed
(no `seeds` key) show as one seed.
"""

from __future__ import annotations

import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backend import compare, ratings
from backend.errors import UserError
from pages import _ui as ui

ui.password_gate()  # here too: a fresh server's first visitor to /<page> runs this file without app.py

ALPHA = 0.05
COLUMNS = ["variety", "name", "n", "baseline_chrf", "decoupled_chrf", "delta", "p_value", "baseline_bleu",
           "decoupled_bleu", "fidelity_baseline", "fidelity_decoupled", "msa_leakage_baseline",
           "msa_leakage_decoupled"]
# Only in experiments over several seeds: sd over seeds, each seed's delta.
SEED_COLUMNS = {"baseline_chrf": "baseline_chrf_sd", "decoupled_chrf": "decoupled_chrf_sd", "delta": "deltas"}


def _num(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _experiment_label(experiment_id: str) -> str:
    try:
        data = compare.read_experiment(experiment_id)
    except UserError:
        return f"{experiment_id} (unreadable)"
    created = data.get("created")
    if isinstance(created, (int, float)):
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
    parts = [str(data.get("name") or experiment_id), str(created or ""), experiment_id]
    return " · ".join(dict.fromkeys(p for p in parts if p))


def _seeds(data: dict) -> list:
    """The experiment's seeds when there are several; [] for one seed or an old file."""
    seeds = data.get("seeds")
    return list(seeds) if isinstance(seeds, list) and len(seeds) > 1 else []


def _deltas_text(deltas) -> str | None:
    """Each seed's delta, `+0.50, +1.20`."""
    if not isinstance(deltas, list):
        return None
    return ", ".join("n/a" if _num(d) is None else f"{_num(d):+.2f}" for d in deltas)


def _plain(value):
    """Lists and dicts as text, so that the table's columns have one type each."""
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value) if isinstance(value, dict) \
        else value


def _significant(p) -> bool:
    p = _num(p)
    return p is not None and p < ALPHA


def _chrf_figure(rows: pd.DataFrame, seeds: list) -> go.Figure:
    labels = [ui.variety_label(v) for v in rows["variety"]]

    def sd(col: str):
        if col not in rows or not rows[col].notna().any():
            return None
        return {"type": "data", "array": [_num(v) for v in rows[col]], "visible": True}

    fig = go.Figure([
        go.Bar(name="baseline", x=labels, y=rows["baseline_chrf"], marker_color="#9aa5b1",
               error_y=sd("baseline_chrf_sd")),
        go.Bar(name="decoupled", x=labels, y=rows["decoupled_chrf"], marker_color="#2f6fdf",
               error_y=sd("decoupled_chrf_sd")),
    ])
    top = rows[["baseline_chrf", "decoupled_chrf"]].max(axis=1).fillna(0)
    for x, y, d, p in zip(labels, top, rows["delta"], rows["p_value"]):
        d = _num(d)
        if d is None:
            continue
        fig.add_annotation(x=x, y=y, text=f"{d:+.1f}{'*' if _significant(p) else ''}", showarrow=False,
                           yshift=12, font={"color": "#1a7f37" if d > 0 else "#b42318" if d < 0 else "#6b7280",
                                            "size": 13})
    over = f"; mean ± sd over seeds {', '.join(map(str, seeds))}" if seeds else ""
    fig.update_layout(barmode="group", height=430, yaxis_title="chrF++", margin={"t": 40, "b": 10},
                      title=f"chrF++ per dialect (delta = decoupled − baseline; * p < 0.05, paired bootstrap{over})",
                      legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    return fig


def _fidelity_figure(rows: pd.DataFrame) -> go.Figure:
    labels = [ui.variety_label(v) for v in rows["variety"]]
    fig = go.Figure()
    for col, name, color in (("fidelity_baseline", "fidelity · baseline", "#9aa5b1"),
                             ("fidelity_decoupled", "fidelity · decoupled", "#2f6fdf"),
                             ("msa_leakage_baseline", "MSA leakage · baseline", "#f2b8b5"),
                             ("msa_leakage_decoupled", "MSA leakage · decoupled", "#d9534f")):
        if col in rows and rows[col].notna().any():
            fig.add_bar(name=name, x=labels, y=rows[col], marker_color=color)
    fig.update_layout(barmode="group", height=380, yaxis_title="share of outputs", yaxis_tickformat=".0%",
                      yaxis_range=[0, 1],
                      title="Dialect fidelity (labelled as the target) and MSA leakage (labelled MSA)",
                      margin={"t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.12, "x": 0, "xanchor": "left", "yanchor": "top"})
    return fig


def _metric_row(title: str, row: dict, seeds: list) -> None:
    base, dec, delta = _num(row.get("baseline_chrf")), _num(row.get("decoupled_chrf")), _num(row.get("delta"))
    if delta is None and base is not None and dec is not None:
        delta = dec - base
    p = _num(row.get("p_value"))

    def with_sd(value, key: str) -> str:
        sd = _num(row.get(f"{key}_sd")) if seeds else None
        return ui.fmt(value, 1) if sd is None else f"{ui.fmt(value, 1)} ± {ui.fmt(sd, 1)}"

    delta_text = None if delta is None else f"{delta:+.2f}"
    if delta_text and seeds and _deltas_text(row.get("deltas")):
        delta_text += f" (seeds: {_deltas_text(row.get('deltas'))})"
    cols = st.columns(3)
    cols[0].metric(f"{title} · baseline chrF++", with_sd(base, "baseline_chrf"))
    cols[1].metric(f"{title} · decoupled chrF++", with_sd(dec, "decoupled_chrf"), delta=delta_text)
    how = "stratified over seeds" if seeds else "paired bootstrap"
    cols[2].metric("paired bootstrap p", ui.fmt(p, 3),
                   help=f"Significant at {ALPHA} when below it ({how})" if p is not None else None)


def _ratings_section() -> None:
    """The blind ratings (Rate page) of one run pair: how often each adapter is preferred,
    the exact sign test, and agreement where two raters rated the same sentence."""
    rated = ratings.pairs_rated()
    if not rated:
        return
    st.subheader("Blind ratings")
    pair = st.selectbox("Rated run pair", list(rated), key="results_rated_pair",
                        format_func=lambda k: f"{k} ({rated[k]} answers)") if len(rated) > 1 else next(iter(rated))
    if rated[pair] < ratings.MIN_FOR_RESULTS:
        st.caption(f"{rated[pair]} answer{'s' if rated[pair] != 1 else ''} so far; the preference rates show from "
                   f"{ratings.MIN_FOR_RESULTS} answers on (Rate page).")
        return
    s = ratings.summary(pair)
    prefs = s["preference"]
    cols = st.columns(2)
    for col, question, title in ((cols[0], "dialect", "more dialectal"), (cols[1], "meaning", "closer in meaning")):
        p = prefs[question]
        rate = p["decoupled_rate"]
        col.metric(f"Decoupled preferred as {title}", "–" if rate is None else f"{100 * rate:.0f}%",
                   help="Share of the decided answers (ties left out) that prefer the decoupled output.")
        col.caption(f"decoupled {p['decoupled']} · baseline {p['baseline']} · ties {p['ties']} · sign test "
                    f"p = {ui.fmt(p['p_value'], 3)}")
    st.caption(f"{s['items']} sentences, {len(s['raters'])} rater{'s' if len(s['raters']) != 1 else ''} "
               f"({ui.md(', '.join(s['raters']))}); each rater's latest answer per sentence. p: exact two-sided "
               "sign test (binomial, p = 1/2), ties excluded.")
    agree = s["agreement"]
    if agree["dialect"]["items"]:
        st.caption(" · ".join(
            f"{q}: {a['items']} sentences rated by two or more raters, agreement "
            f"{ui.fmt(None if a['percent'] is None else 100 * a['percent'], 0)}%, Cohen's kappa {ui.fmt(a['kappa'], 2)}"
            for q, a in agree.items()))
    else:
        st.caption("Inter-rater agreement: no sentence has been rated by two raters yet.")
    st.download_button("Download the ratings as CSV", ratings.export_csv(pair).encode("utf-8"),
                       file_name="ratings.csv", mime="text/csv", key="results_ratings_csv")


st.title("Results")
with ui.shown_errors("Reading the ratings"):
    _ratings_section()
experiments = compare.list_experiments()
if not experiments:
    st.info("No evaluated experiment yet. `python -m backend experiment` builds a base, a baseline and a "
            "decoupled run and evaluates them; its results appear here.")
    st.stop()

experiment_id = st.selectbox("Experiment", experiments, format_func=_experiment_label)
try:
    data = compare.read_experiment(experiment_id)
    rows = pd.DataFrame([r for r in data.get("rows") or [] if isinstance(r, dict)])
except UserError as e:
    st.error(str(e))
    st.stop()
seeds = _seeds(data)
columns = list(COLUMNS)
if seeds:
    for after, col in SEED_COLUMNS.items():
        columns.insert(columns.index(after) + 1, col)
for col in columns:
    if col not in rows:
        rows[col] = None
if rows.empty:
    st.warning(f"Experiment {experiment_id} has no per-dialect rows.")
    st.stop()
for col in columns[2:]:
    if col != "deltas":
        rows[col] = pd.to_numeric(rows[col], errors="coerce")

runs = data.get("runs") or {}
st.caption(" · ".join(x for x in (
    f"baseline run {compare._run_id(runs.get('baseline'))}" if runs.get("baseline") else "",
    f"decoupled run {compare._run_id(runs.get('decoupled'))}" if runs.get("decoupled") else "",
    f"dialect identifier accuracy {100 * _num(data['identifier_accuracy']):.0f}%"
    if _num(data.get("identifier_accuracy")) is not None else "",
) if x))
if seeds:
    st.caption(f"Seeds {', '.join(map(str, seeds))}: each seed trained its own baseline and decoupled run (the runs "
               "above are the first seed's). chrF++ is the mean ± sd over seeds, the delta the mean with each seed's "
               "delta beside it; BLEU, fidelity and MSA leakage are means over seeds. p: paired bootstrap stratified "
               "over seeds (the average's over dialects and seeds).")

average = data.get("average") if isinstance(data.get("average"), dict) else {}
msa = data.get("msa") if isinstance(data.get("msa"), dict) else {}
if average:
    _metric_row("average over dialects", average, seeds)
if msa:
    _metric_row("MSA (the trade-off)", msa, seeds)

st.plotly_chart(_chrf_figure(rows, seeds))
if rows[["fidelity_baseline", "fidelity_decoupled"]].notna().any().any():
    st.plotly_chart(_fidelity_figure(rows))

table = rows[columns + [c for c in rows.columns if c not in columns]].copy()
extra = [{**row, "variety": label} for label, row in (("average", average), ("MSA", msa)) if row]
if extra:
    table = pd.concat([table, pd.DataFrame(extra)], ignore_index=True)
table["significant"] = [_significant(p) for p in table["p_value"]]
if "deltas" in table:
    table["deltas"] = [_deltas_text(d) for d in table["deltas"]]
for col in table.columns:
    if table[col].dtype == object:
        table[col] = [_plain(v) for v in table[col]]
st.subheader("Table")
st.dataframe(table, hide_index=True, column_config={
    "p_value": st.column_config.NumberColumn(format="%.3f"),
    **{c: st.column_config.NumberColumn(format="%.2f") for c in
       ("baseline_chrf", "decoupled_chrf", "delta", "baseline_bleu", "decoupled_bleu", "baseline_chrf_sd",
        "decoupled_chrf_sd")},
    "deltas": st.column_config.TextColumn("delta per seed"),
    **{c: st.column_config.NumberColumn(format="percent") for c in
       ("fidelity_baseline", "fidelity_decoupled", "msa_leakage_baseline", "msa_leakage_decoupled")},
})
st.download_button("Download the table as CSV", table.to_csv(index=False).encode("utf-8"),
                   file_name=f"{experiment_id}-results.csv", mime="text/csv")

signatures = data.get("signatures")
if signatures:
    with st.expander("How these numbers were made (sacrebleu signatures, settings)"):
        if isinstance(signatures, dict):
            for name, sig in signatures.items():
                st.markdown(f"- **{name}**: `{sig}`")
        else:
            st.code(str(signatures), language=None)
        for key in ("config", "hardware"):
            if data.get(key):
                st.markdown(f"**{key}**")
                st.json(data[key], expanded=False)
sweep = data.get("sweep")
if isinstance(sweep, list) and sweep:
    summary = []
    for s in sweep:
        if not isinstance(s, dict):
            continue
        a = s.get("average") if isinstance(s.get("average"), dict) else {}
        m = s.get("msa") if isinstance(s.get("msa"), dict) else {}
        setting = s.get("setting")
        item = {"setting": ", ".join(f"{k}={v}" for k, v in setting.items()) if isinstance(setting, dict)
                else str(s.get("label") or setting),
                "baseline_chrf": _num(a.get("baseline_chrf")), "decoupled_chrf": _num(a.get("decoupled_chrf")),
                "delta": _num(a.get("delta")), "p_value": _num(a.get("p_value")), "msa_delta": _num(m.get("delta")),
                "fidelity_baseline": _num(a.get("fidelity_baseline")),
                "fidelity_decoupled": _num(a.get("fidelity_decoupled"))}
        if seeds:
            item.update(baseline_chrf_sd=_num(a.get("baseline_chrf_sd")),
                        decoupled_chrf_sd=_num(a.get("decoupled_chrf_sd")), deltas=_deltas_text(a.get("deltas")),
                        msa_deltas=_deltas_text(m.get("deltas")))
        summary.append(item)
    with st.expander(f"Sweep over {data.get('sweep_param') or 'settings'}"):
        st.caption("Averages over dialects" + (f"; mean ± sd over seeds {', '.join(map(str, seeds))}, with each "
                                               "seed's delta" if seeds else ""))
        st.dataframe(pd.DataFrame(summary), hide_index=True, column_config={
            "p_value": st.column_config.NumberColumn(format="%.3f"),
            **{c: st.column_config.NumberColumn(format="%.2f") for c in
               ("baseline_chrf", "decoupled_chrf", "delta", "msa_delta", "baseline_chrf_sd", "decoupled_chrf_sd")},
            **{c: st.column_config.NumberColumn(format="percent") for c in ("fidelity_baseline", "fidelity_decoupled")},
        })

arms = data.get("arms")
if isinstance(arms, dict) and isinstance(arms.get("arms"), list) and arms["arms"]:
    st.subheader("Arms: inference-time steering beside decoupling")
    reference = str(arms.get("reference") or "baseline")
    summary, per_variety = [], {}
    for arm in arms["arms"]:
        if not isinstance(arm, dict):
            continue
        name = str(arm.get("name"))
        a = arm.get("average") if isinstance(arm.get("average"), dict) else {}
        m = arm.get("msa") if isinstance(arm.get("msa"), dict) else {}
        how = arm.get("steering") if isinstance(arm.get("steering"), dict) else {}
        layers = how.get("layers") if isinstance(how.get("layers"), list) else []
        summary.append({
            "arm": name, "system": str(arm.get("system") or ""),
            "steering": f"{how.get('method')} s={_num(how.get('strength'))} layers {','.join(map(str, layers))}"
            if how else "–",
            "chrf": _num(a.get("chrf")), "delta": _num(a.get("delta")), "p_value": _num(a.get("p_value")),
            "bleu": _num(a.get("bleu")), "fidelity": _num(a.get("fidelity")), "msa_leakage": _num(a.get("msa_leakage")),
            "msa_chrf": _num(m.get("chrf")), "msa_delta": _num(m.get("delta"))})
        for r in [*(arm.get("rows") or []), *([m] if m else [])]:
            if isinstance(r, dict):
                per_variety.setdefault(str(r.get("variety")), {})[name] = _num(r.get("chrf"))
    st.caption(f"Every arm on the same {ui.md(arms.get('split') or '')} sentences; the deltas and p-values are "
               f"against the arm {ui.md(reference)} (paired bootstrap; averages over dialects). Fidelity / MSA "
               "leakage: share of outputs the dialect identifier labels as the target dialect / as MSA.")
    st.dataframe(pd.DataFrame(summary), hide_index=True, key="results_arms", column_config={
        "p_value": st.column_config.NumberColumn(format="%.3f"),
        **{c: st.column_config.NumberColumn(format="%.2f") for c in ("chrf", "delta", "bleu", "msa_chrf", "msa_delta")},
        **{c: st.column_config.NumberColumn(format="percent") for c in ("fidelity", "msa_leakage")},
    })
    fig = go.Figure([go.Bar(x=[s["arm"] for s in summary], y=[s["chrf"] for s in summary], marker_color="#2f6fdf",
                            text=[f"{s['delta']:+.2f}{'*' if _significant(s['p_value']) else ''}"
                                  if s["delta"] is not None else "" for s in summary], textposition="outside")])
    fig.update_layout(height=360, yaxis_title="chrF++ (average over dialects)", margin={"t": 40, "b": 10},
                      title=f"chrF++ per arm (labels: delta against {reference}; * p < 0.05)")
    st.plotly_chart(fig, key="results_arms_chart")
    with st.expander("chrF++ per variety and arm"):
        st.dataframe(pd.DataFrame.from_dict(per_variety, orient="index").rename_axis("variety").reset_index(),
                     hide_index=True)
