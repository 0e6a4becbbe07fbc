"""Compare: one source sentence through the base model, the baseline and the decoupled adapter.

The base and both adapters are loaded once per run pair (st.cache_resource) and the three
outputs come from one batched generate call (backend.compare). An optional fourth column
steers one of the three systems at inference time (backend.steering) in the same call.
"""

from __future__ import annotations

import streamlit as st

from backend import compare, paths, safety, steering, varieties, wordmarks
from backend.errors import UserError
from pages import _ui as ui

ui.password_gate()  # here too: a fresh server's first visitor to /<page> runs this file without app.py


@st.cache_resource(max_entries=2, show_spinner=False)
def _pair_model(key: str) -> compare.PairModel:
    return compare.load_pair_model(compare.get_pair(key))


@st.cache_resource(max_entries=4, show_spinner=False)
def _marker(source: str) -> wordmarks.Marker:
    return wordmarks.marker_for(source)


@st.cache_data(max_entries=32, show_spinner=False)
def _examples(source: str, target: str) -> list[tuple[str, str, str]]:
    return [(p.source, p.source_variety, p.target) for p in compare.split_examples(source, target, "test")]


def _target_options() -> list[str]:
    return [v.code for vs in varieties.by_region().values() for v in vs]


st.title("Compare")

pairs = compare.find_pairs()
ui.damaged_runs_note()
if not pairs:
    st.info("There is no finished run pair (a baseline and a decoupled adapter trained alike) yet.")
    st.page_link("pages/home.py", label="Build the demo models on the Welcome page", icon=":material/home:")
    st.stop()

by_key = {p.key: p for p in pairs}
pair_key = st.selectbox("Run pair", list(by_key), format_func=lambda k: by_key[k].label, key="compare_pair",
                   help="A baseline (λ = 0) and a decoupled adapter trained with the same base, data, "
                        "dialects, steps, LoRA and seed; only the penalty's settings (λ, layers, probe) differ.")
pair = by_key[pair_key]
with ui.shown_errors("Reading the pair's settings"):
    for note in compare.measurement_notes(pair):
        st.caption(note)
try:
    config = pair.config()
    trained = pair.trained_varieties()
except UserError as e:
    st.error(ui.message(e))
    st.stop()

options = _target_options()
default_target = next((c for c in trained if c != "MSA"), "MSA")
target = st.selectbox(
    "Target variety", options, index=options.index(default_target) if default_target in options else 0,
    format_func=lambda c: f"{varieties.get(c).region} › {varieties.get(c).label}{'  ✓ trained' if c in trained else ''}",
    help="All 25 MADAR city dialects and MSA, grouped by region; ✓ marks the ones this pair was trained on.",
    key=f"compare_target_{pair_key}",
)
if target not in trained:
    st.warning(
        f"The adapters were not trained on {ui.variety_label(target)}. You can still run it: the outputs "
        "show what the models do with a variety tag they never saw in fine-tuning, not what decoupling does."
    )

mode = st.radio("Source sentence", ["Type a sentence", "Pick one from the test split"], horizontal=True,
                key="compare_mode")
reference: str | None = None
if mode == "Type a sentence":
    cols = st.columns([1, 3])
    source_variety = cols[0].selectbox("Written in", ["MSA", "ENG"],
                                      format_func=lambda c: f"{varieties.get(c).name} ({c})",
                                      key="compare_source_variety")
    source = cols[1].text_area("Sentence", height=90, key="compare_typed",
                               placeholder="اكتب جملة بالعربية الفصحى هنا")
    reference = st.text_input("Reference translation (optional, for chrF++)", key="compare_reference") or None
else:
    source, source_variety = "", "MSA"
    examples: list[tuple[str, str, str]] = []
    with ui.shown_errors(f"Reading the test split of {config.source}"):
        examples = _examples(config.source, target)
    if not examples:
        st.warning(f"The corpus {ui.md(paths.redact(config.source))} has no test sentences into {ui.variety_label(target)}; "
                   "type a sentence instead.")
    else:
        i = st.selectbox(f"Test sentence ({len(examples)} into {target})", range(len(examples)),
                         format_func=lambda j: examples[j][0][:90], key=f"compare_example_{pair_key}_{target}")
        source, source_variety, reference = examples[i]
        st.caption(f"Source ({source_variety})")
        if source_variety == "ENG":  # a statement, not an expression: Streamlit's magic would print its None
            st.text(source)
        else:
            ui.rtl(source)
        st.caption(f"Reference ({target})")
        ui.rtl(reference)

steer: steering.SteerSpec | None = None
steer_system = "decoupled"
if st.toggle("Add a fourth column: inference-time steering", key="compare_steer_on",
             help="Steer one of the three systems while it generates, with no training: `project` shrinks the "
                  "component of its hidden states inside the MSA subspace (the inference-time mirror of the "
                  "decoupling penalty), `vector` adds the dialect-minus-MSA mean difference."):
    n_layers = steering.base_layer_count(config.base) or 1
    cols = st.columns([1, 1, 1, 2])
    steer_system = cols[0].selectbox("Steer", ["decoupled", "baseline", "base"], key="compare_steer_system")
    method = cols[1].selectbox("Method", list(steering.METHODS), key="compare_steer_method")
    strength = cols[2].slider("Strength", 0.0, steering.MAX_STRENGTH[method], 1.0, 0.05,
                              key=f"compare_steer_strength_{method}")
    layers = cols[3].multiselect("Layers", list(range(1, n_layers + 1)), key="compare_steer_layers",
                                 help="Hidden-state layers (1 = after the first decoder layer). Empty: the "
                                      "run's probe layers (the default middle-to-upper layers for the base).")
    steer = steering.SteerSpec(method, strength, tuple(layers) or None)

if st.button("Compare", type="primary", key="compare_run"):
    st.session_state.pop("compare_result", None)
    try:
        source = safety.check_text(source, "the source sentence")
    except UserError as e:
        st.error(ui.message(str(e)[0].upper() + str(e)[1:] + "."))
        source = ""
    if source:
        pm = None
        with st.spinner("Loading the base model and both adapters (first time only)…"):
            try:
                pm = _pair_model(pair_key)
            except UserError as e:
                st.error(f"The models could not be loaded: {ui.message(e)}")
            except Exception as e:  # noqa: BLE001 - a model that fails to load is a message, not a traceback
                ui.log.exception("loading run pair %s failed", pair_key)
                st.error(ui.message(compare.load_error_message(e)))
        if pm is not None:
            with ui.shown_errors("Generating"), st.spinner("Generating…"):
                st.session_state["compare_result"] = (pair_key, compare.compare(
                    pm, source, target, source_variety=source_variety, reference=reference, steer=steer,
                    steer_system=steer_system))
            if pm.identifier is None and pm.identifier_note:
                st.caption(pm.identifier_note)

stored = st.session_state.get("compare_result")
if stored and stored[0] == pair_key:
    result: compare.Comparison = stored[1]
    st.subheader(f"Into {ui.variety_label(result.target_variety)}")
    marker = None
    with ui.shown_errors("Finding the MSA words"):
        marker = _marker(config.source)
    marked = wordmarks.mark_outputs({o.system: o.text for o in result.outputs}, result.target_variety, marker)
    for col, out in zip(st.columns(len(result.outputs)), result.outputs):
        with col:
            st.markdown(f"**{out.title}**")
            if out.text.strip():
                st.markdown(marked[out.system], unsafe_allow_html=True)
            else:
                ui.rtl(out.text, card=True)
            facts = []
            if out.label is not None:
                mark = "✓" if out.label == result.target_variety else "✗"
                facts.append(f"identified as {ui.variety_label(out.label)} ({100 * out.confidence:.0f}%) {mark}")
            if out.chrf is not None:
                facts.append(f"chrF++ {out.chrf:.1f}")
            st.caption(" · ".join(facts) if facts else "no identifier or reference for this output")
    st.markdown('<small><span class="dd-msa">wavy underline</span>: an MSA form where the target has its own word '
                '· <span class="dd-diff">shaded</span>: differs between baseline and decoupled</small>',
                unsafe_allow_html=True)
    if marker is not None:
        st.caption(ui.md(marker.how) + ".")
    how = "one batched call" if result.batched else f"{len(result.outputs)} calls"
    st.caption(f"Generated and scored in {result.seconds:.2f} s ({how}, greedy)"
               + ("" if result.trained_on_target else " — untrained target variety") + ". The prompt:")
    st.code(result.prompt, language=None, wrap_lines=True)
