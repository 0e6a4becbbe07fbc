"""Browse: a run pair's evaluated test outputs as a table, and one sentence's words marked.

Everything comes from the two runs' outputs.jsonl (backend.browse) and the pair's corpus
(backend.wordmarks); nothing here loads a model, so the page is quick on any machine.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from backend import browse, varieties, wordmarks
from pages import _ui as ui

ui.password_gate()  # here too: a fresh server's first visitor to /<page> runs this file without app.py

PAGE_SIZE = 25


@st.cache_resource(max_entries=4, show_spinner=False)
def _marker(source: str) -> wordmarks.Marker:
    return wordmarks.marker_for(source)


st.title("Browse outputs")
ui.damaged_runs_note()
pair, table = ui.choose_pair_table(
    "browse_pair", "There is no finished run pair yet: build the demo models on the Welcome page, or train a "
    "baseline and a decoupled adapter alike and evaluate both.")
if not table.rows:
    st.info("The two runs share no evaluated sentence.")
    st.stop()

codes = list(dict.fromkeys(r.variety for r in table.rows))
cols = st.columns([1, 2, 2, 1])
variety = cols[0].selectbox("Variety", ["all", *codes], key="browse_variety",
                            format_func=lambda c: "All varieties" if c == "all" else ui.variety_label(c))
query = cols[1].text_input("Search (Arabic or English)", key="browse_query",
                           help="Finds the text in the source, the reference or any output, after normalising "
                                "diacritics, alef and yaa shapes and tatweel.")
sort = cols[2].selectbox("Sort by", list(browse.SORTS), format_func=browse.SORTS.get, key="browse_sort")
only_diff = cols[3].checkbox("Only where the outputs differ", key="browse_only_diff")
rows = browse.select(table.rows, variety=None if variety == "all" else variety, query=query, sort=sort,
                     only_different=only_diff)

n_pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
page_cols = st.columns([3, 1])
page_no = page_cols[1].number_input("Page", 1, n_pages, 1, key="browse_page") if n_pages > 1 else 1
shown = rows[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]
split = f" of the {table.split} split" if table.split else ""
page_cols[0].caption(f"{len(rows)} of {len(table.rows)} sentences{split}"
                     + (f" · page {page_no} of {n_pages}" if n_pages > 1 else "")
                     + (f" · {table.unmatched} evaluated in one run only, left out" if table.unmatched else "")
                     + ". chrF++: sentence chrF++ (sacrebleu, word order 2) on normalised text; label: the dialect "
                       "identifier's guess.")
st.dataframe(pd.DataFrame(browse.records(shown, table.systems)), hide_index=True, key="browse_table",
             column_config={f"{s}_chrf": st.column_config.NumberColumn(format="%.1f") for s in table.systems}
             | {"chrf_diff": st.column_config.NumberColumn("chrF++ Δ", format="%+.1f")})
st.download_button("Download these sentences as CSV", browse.to_csv(rows, table.systems).encode("utf-8"),
                   file_name=f"{pair.decoupled.id}-outputs.csv", mime="text/csv", key="browse_download")

st.subheader("Words")
if not shown:
    st.info("No sentence matches.")
    st.stop()
i = st.selectbox("Sentence", range(len(shown)), key="browse_sentence",
                 format_func=lambda j: f"{shown[j].variety} · {shown[j].source[:80]}")
row = shown[i]
marker = None
with ui.shown_errors("Finding the MSA words"):
    marker = _marker(pair.config().source)
target = ui.variety_label(row.variety)
st.caption(f"Source ({row.source_variety}); underlined words are MSA forms that {target} says differently"
           if row.source_variety == "MSA" and row.variety != "MSA" else f"Source ({row.source_variety})")
if row.source_variety == "ENG":
    st.text(row.source)
else:
    msa = marker.msa_words(row.source, row.variety) if marker else None
    st.markdown(wordmarks.to_html(row.source, msa, None, "dd-card"), unsafe_allow_html=True)
st.caption(f"Reference ({row.variety})")
ui.rtl(row.reference, card=True)
html_by_system = wordmarks.mark_outputs({s: c.text for s, c in row.systems.items()}, row.variety, marker)
for col, system in zip(st.columns(len(html_by_system)), html_by_system):
    cell = row.systems[system]
    with col:
        st.markdown(f"**{ui.md(system)}**")
        if cell.text.strip():
            st.markdown(html_by_system[system], unsafe_allow_html=True)
        else:
            ui.rtl("", card=True)
        label = f"identified as {ui.variety_label(cell.label)}" if cell.label else "no label"
        st.caption(f"chrF++ {ui.fmt(cell.chrf, 1)} · {label}")
legend = '<span class="dd-msa">wavy underline</span>: an MSA form where the target has its own word · ' \
         '<span class="dd-diff">shaded</span>: differs between baseline and decoupled'
st.markdown(f"<small>{legend}</small>", unsafe_allow_html=True)
if marker is not None:
    st.caption(ui.md(marker.how) + ".")
if row.variety not in varieties.parse_list(pair.config().dialects):
    st.caption("The pair was not trained on this variety.")
