"""Tables and figures from evaluation results: markdown like the paper's, plotly HTML.

Figures are written as standalone HTML files that load `plotly.min.js` from their own
folder (written once beside them), so they open offline and a folder of figures costs one
copy of the library, not one per file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from backend.runs import write_text_atomic


def _num(x, digits: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _p(p) -> str:
    if p is None:
        return "–"
    mark = "*" if p < 0.05 else ""
    return f"{p:.3f}{mark}" if p >= 0.001 else f"<0.001{mark}"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _share(a, b) -> str:
    return f"{_pct(a)} → {_pct(b)}"


def _seeds(table: dict) -> list:
    """The seeds of a table over several seeds; [] for a single run's table (or one seed)."""
    seeds = table.get("seeds") or []
    return list(seeds) if isinstance(seeds, list) and len(seeds) > 1 else []


def _mean_sd(mean, sd, digits: int = 2) -> str:
    """`12.34 ± 0.56`; the mean alone without an sd (one seed)."""
    return _num(mean, digits) if sd is None else f"{_num(mean, digits)} ± {_num(sd, digits)}"


def _delta_seeds(delta, deltas, digits: int = 2) -> str:
    """`+0.80 (+0.50, +1.20, +0.70)`: the mean delta, then each seed's; the mean alone for one."""
    text = _num(delta, digits, signed=True)
    if isinstance(deltas, list) and len(deltas) > 1:
        text += " (" + ", ".join(_num(d, digits, signed=True) for d in deltas) + ")"
    return text


def seeds_caption(seeds: Sequence) -> str:
    return ", ".join(str(s) for s in seeds)


def comparison_markdown(table: dict, title: str | None = None) -> str:
    """Per dialect: baseline chrF++, decoupled chrF++, delta, p, BLEU, fidelity and MSA leakage
    (baseline → decoupled); the average over dialects; the MSA row for the trade-off.

    A table over several seeds (`compare_seeds`) shows chrF++ as mean ± sd over seeds and the
    delta as its mean followed by the per-seed deltas; one seed gives the single-run table."""
    seeds = _seeds(table)
    if seeds:
        head = ("| Variety | n | Baseline chrF++ (mean ± sd) | Decoupled chrF++ (mean ± sd) | Δ mean (per seed) | p "
                "| BLEU (baseline → decoupled) | Fidelity (baseline → decoupled) "
                "| MSA leakage (baseline → decoupled) |")
    else:
        head = ("| Variety | n | Baseline chrF++ | Decoupled chrF++ | Δ | p | BLEU (baseline → decoupled) "
                "| Fidelity (baseline → decoupled) | MSA leakage (baseline → decoupled) |")
    lines = [f"### {title}", ""] if title else []
    lines += [head, "|" + "---|" * 9]

    def row(r: dict, bold: bool = False) -> str:
        b = "**" if bold else ""
        # Into MSA, "labelled MSA" is fidelity, not leakage.
        leakage = "–" if r["variety"] == "MSA" else _share(r["msa_leakage_baseline"], r["msa_leakage_decoupled"])
        name = f"{b}{r.get('name', r['variety'])} ({r['variety']}){b}" if r["variety"] != "AVG" else f"{b}Average{b}"
        if seeds:
            base, dec = _mean_sd(r["baseline_chrf"], r.get("baseline_chrf_sd")), \
                _mean_sd(r["decoupled_chrf"], r.get("decoupled_chrf_sd"))
            delta = _delta_seeds(r["delta"], r.get("deltas"))
        else:
            base, dec, delta = _num(r["baseline_chrf"]), _num(r["decoupled_chrf"]), _num(r["delta"], signed=True)
        return (f"| {name} | {r.get('n', '')} | {b}{base}{b} | {b}{dec}{b} "
                f"| {b}{delta}{b} | {_p(r['p_value'])} "
                f"| {_num(r['baseline_bleu'])} → {_num(r['decoupled_bleu'])} "
                f"| {_share(r['fidelity_baseline'], r['fidelity_decoupled'])} "
                f"| {leakage} |")

    for r in table.get("rows", []):
        lines.append(row(r))
    if table.get("average"):
        lines.append(row({**table["average"], "variety": "AVG"}, bold=True))
    if table.get("msa"):
        lines.append(row(table["msa"]))
    lines.append("")
    if seeds:
        lines.append(f"Seeds {seeds_caption(seeds)}: each seed trained its own baseline and decoupled run. chrF++ is "
                     "the mean ± sd (n − 1) over seeds of each seed's corpus chrF++ (n sentences per seed); Δ is the "
                     "mean delta, each seed's delta in brackets in seed order; BLEU, fidelity and MSA leakage are "
                     f"means over seeds. p: paired bootstrap ({table.get('bootstrap', 1000)} resamples) of decoupled "
                     "against baseline, stratified over seeds (each seed's sentences resampled within themselves, "
                     "the same indices for that seed's two runs); the average's p is stratified over dialects and "
                     "seeds. * p < 0.05. Fidelity / MSA leakage: share of outputs the dialect identifier labels as "
                     "the target dialect / as MSA.")
    else:
        lines.append(f"p: sacrebleu paired bootstrap ({table.get('bootstrap', 1000)} resamples) of decoupled against "
                     "baseline; the average's "
                     "p is a stratified paired bootstrap over dialects. * p < 0.05. Fidelity / MSA leakage: share "
                     "of outputs the dialect identifier labels as the target dialect / as MSA.")
    return "\n".join(lines)


def entanglement_markdown(ent: dict) -> str:
    """Means over layers per system."""
    if not ent or not ent.get("systems"):
        return ""
    seeds = _seeds(ent)
    over = f"mean over layers, then over seeds {seeds_caption(seeds)}" if seeds else "mean over layers"
    lines = [f"Entanglement on {ent['n_pairs']} held-out parallel pairs, layers {ent['layers']} ({over}):",
             "", "| System | MSA-subspace energy (probe) | energy (MSA PCA) | random | probe acc. "
             "| code length (bits/token) | mean principal angle (°) | CKA |", "|" + "---|" * 8]
    for name, s in ent["systems"].items():
        m = s["mean"]
        lines.append(f"| {name} | {_num(m['energy_probe'], 3)} | {_num(m['energy_pca'], 3)} "
                     f"| {_num(m['energy_random'], 3)} | {_num(m['probe_accuracy'], 3)} "
                     f"| {_num(m['code_bits_per_token'], 3)} | {_num(m['mean_angle'], 1)} | {_num(m['cka'], 3)} |")
    return "\n".join(lines)


def sweep_markdown(sweep: Sequence[dict]) -> str:
    if not sweep:
        return ""
    seeds = next((_seeds(s) for s in sweep if _seeds(s)), [])
    if seeds:
        lines = ["| Setting | Baseline chrF++ (avg, mean ± sd) | Decoupled chrF++ (avg, mean ± sd) "
                 "| Δ mean (per seed) | p | MSA Δ mean (per seed) | Fidelity (baseline → decoupled) |",
                 "|" + "---|" * 7]
    else:
        lines = ["| Setting | Baseline chrF++ (avg) | Decoupled chrF++ (avg) | Δ | p | MSA Δ "
                 "| Fidelity (baseline → decoupled) |", "|" + "---|" * 7]
    for s in sweep:
        a, m = s.get("average") or {}, s.get("msa") or {}
        label = ", ".join(f"{k}={v}" for k, v in s["setting"].items())
        if seeds:
            cells = (_mean_sd(a.get("baseline_chrf"), a.get("baseline_chrf_sd")),
                     _mean_sd(a.get("decoupled_chrf"), a.get("decoupled_chrf_sd")),
                     _delta_seeds(a.get("delta"), a.get("deltas")), _delta_seeds(m.get("delta"), m.get("deltas")))
        else:
            cells = (_num(a.get("baseline_chrf")), _num(a.get("decoupled_chrf")), _num(a.get("delta"), signed=True),
                     _num(m.get("delta"), signed=True))
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} | {_p(a.get('p_value'))} | {cells[3]} "
                     f"| {_share(a.get('fidelity_baseline'), a.get('fidelity_decoupled'))} |")
    if seeds:
        lines += ["", f"Over seeds {seeds_caption(seeds)}: averages over dialects, mean ± sd over seeds; Δ is the "
                      "mean delta with each seed's in brackets; p is the paired bootstrap stratified over dialects "
                      "and seeds."]
    return "\n".join(lines)


# --- figures -------------------------------------------------------------------------------

def dialect_bars(table: dict, title: str = "chrF++ per dialect"):
    import plotly.graph_objects as go  # lazy: plotly (0.4 s); tables need no figures

    rows = list(table.get("rows", []))
    if table.get("average"):
        rows.append({**table["average"], "variety": "AVG"})
    if table.get("msa"):
        rows.append(table["msa"])
    x = [r["variety"] for r in rows]

    def sd(key: str):  # error bars: sd over seeds, when the table has several
        values = [r.get(f"{key}_sd") for r in rows]
        return {"type": "data", "array": values, "visible": True} if any(v is not None for v in values) else None

    fig = go.Figure([
        go.Bar(name="baseline", x=x, y=[r["baseline_chrf"] for r in rows], error_y=sd("baseline_chrf")),
        go.Bar(name="decoupled", x=x, y=[r["decoupled_chrf"] for r in rows], error_y=sd("decoupled_chrf"),
               text=[f"{r['delta']:+.1f}" if r.get("delta") is not None else "" for r in rows],
               textposition="outside"),
    ])
    fig.update_layout(barmode="group", title=title, yaxis_title="chrF++", xaxis_title="variety")
    return fig


def overlap_figure(training: dict, title: str = "MSA-subspace overlap of dialect states during training"):
    """Mean overlap over layers against the step, one line per run (both runs measure it)."""
    import plotly.graph_objects as go  # lazy: plotly (0.4 s); tables need no figures

    fig = go.Figure()
    for name, series in training.items():
        pts = [p for p in series if p.get("overlap") is not None]
        fig.add_trace(go.Scatter(x=[p["step"] for p in pts], y=[p["overlap"] for p in pts], mode="lines+markers",
                                 name=name))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="energy fraction inside the MSA subspace")
    return fig


def entanglement_figure(ent: dict, key: str = "energy_probe"):
    import plotly.graph_objects as go  # lazy: plotly (0.4 s); tables need no figures

    fig = go.Figure()
    for name, s in (ent.get("systems") or {}).items():
        layers = sorted(s["layers"], key=int)
        fig.add_trace(go.Scatter(x=[int(l) for l in layers], y=[s["layers"][l][key] for l in layers],
                                 mode="lines+markers", name=name))
    fig.update_layout(title=f"{key} per layer", xaxis_title="layer", yaxis_title=key)
    return fig


def projection_figure(ent: dict):
    import plotly.graph_objects as go  # lazy: plotly (0.4 s); tables need no figures
    from plotly.subplots import make_subplots  # lazy: plotly (0.4 s); tables need no figures

    proj = ent.get("projection") or {}
    points = proj.get("points", [])
    systems = list(dict.fromkeys(p["system"] for p in points))
    fig = make_subplots(rows=1, cols=max(1, len(systems)), subplot_titles=systems, shared_xaxes=True,
                        shared_yaxes=True)
    for col, name in enumerate(systems, start=1):
        for kind, symbol in (("MSA", "circle"), ("dialect", "x")):
            pts = [p for p in points if p["system"] == name and p["kind"] == kind]
            fig.add_trace(go.Scatter(x=[p["x"] for p in pts], y=[p["y"] for p in pts], mode="markers",
                                     marker={"symbol": symbol, "size": 6}, name=f"{name}: {kind}",
                                     text=[p["variety"] for p in pts], legendgroup=kind), row=1, col=col)
    fig.update_layout(title=f"Sentence states at layer {proj.get('layer')}, PCA of the base model's states")
    return fig


def sweep_figure(sweep: Sequence[dict]):
    import plotly.graph_objects as go  # lazy: plotly (0.4 s); tables need no figures

    labels = [", ".join(f"{k}={v}" for k, v in s["setting"].items()) for s in sweep]
    avg = [s.get("average") or {} for s in sweep]

    def sd(key: str):
        values = [a.get(f"{key}_sd") for a in avg]
        return {"type": "data", "array": values, "visible": True} if any(v is not None for v in values) else None

    fig = go.Figure([
        go.Bar(name="baseline", x=labels, y=[a.get("baseline_chrf") for a in avg], error_y=sd("baseline_chrf")),
        go.Bar(name="decoupled", x=labels, y=[a.get("decoupled_chrf") for a in avg], error_y=sd("decoupled_chrf")),
    ])
    fig.update_layout(barmode="group", title="Average chrF++ over dialects per setting", yaxis_title="chrF++")
    return fig


def write_figure(fig, path: Path) -> Path:
    """Atomic HTML that loads plotly.min.js from its own folder (written once)."""
    from plotly.offline import get_plotlyjs  # lazy: plotly (0.4 s); tables need no figures

    path = Path(path)
    js = path.parent / "plotly.min.js"
    if not js.is_file():
        write_text_atomic(js, get_plotlyjs())
    write_text_atomic(path, fig.to_html(include_plotlyjs="directory", full_html=True))
    return path
