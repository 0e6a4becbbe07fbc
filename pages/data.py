"""Data: browse a corpus by variety, parallel sentences side by side, counts per split.

A typed corpus spec goes through backend.safety.resolve_source_spec, so a path can only
point inside the configured data roots.
"""

from __future__ import annotations

import html

import pandas as pd
import streamlit as st

from backend import varieties
from backend.data import SPLITS, load_corpus
from backend.errors import UserError
from backend.safety import resolve_source_spec
from pages import _ui as ui

ui.password_gate()  # here too: a fresh server's first visitor to /<page> runs this file without app.py

PAGE_SIZE = 25


@st.cache_resource(max_entries=4, show_spinner="Loading the corpus…")
def _corpus(spec: str):
    return load_corpus(spec)


def _cell(text: str, variety: str) -> str:
    if variety == "ENG":
        return f'<td dir="ltr">{html.escape(text)}</td>'
    return f'<td class="dd-rtl" dir="rtl" lang="ar">{html.escape(text)}</td>'


st.title("Data")
spec = st.text_input(
    "Corpus", value="offline", key="data_spec",
    help="offline (built in, written by this project), or a folder/file inside the data roots, "
         "for example madar:/path/to/MADAR or csv:/path/to/pairs.tsv",
).strip()
if not spec:
    st.error("Type a corpus spec, for example `offline`.")
    st.stop()
try:
    resolved = resolve_source_spec(spec)
    corpus = _corpus(str(resolved))
except UserError as e:
    st.error(ui.message(e))
    st.stop()
name = ui.message(corpus.name)  # a corpus spec can hold a path and any character
if not len(corpus):
    st.warning(f"{name} holds no sentence pairs.")
    st.stop()

counts = corpus.counts()
codes = corpus.target_varieties()
table = pd.DataFrame(
    [{"variety": ui.variety_label(c), **{s: counts.get((c, s), 0) for s in SPLITS}} for c in codes]
)
table["total"] = table[list(SPLITS)].sum(axis=1)
st.subheader(f"{name}: {len(corpus):,} pairs")
st.dataframe(table, hide_index=True)

st.subheader("Sentences")
cols = st.columns([3, 1, 2])
ordered = [v.code for vs in varieties.by_region(tuple(varieties.get(c) for c in codes
                                                       if c in {v.code for v in varieties.ALL})).values()
           for v in vs]
ordered += [c for c in codes if c not in ordered]
default = next((i for i, c in enumerate(ordered) if c != "MSA"), 0)
target = cols[0].selectbox("Target variety", ordered, index=default, format_func=ui.variety_label)
split = cols[1].selectbox("Split", SPLITS)
query = cols[2].text_input("Contains (optional)", key="data_query").strip()
pairs = [p for p in corpus.filter(split=split, targets=[target]).pairs
         if not query or query in p.source or query in p.target]
if not pairs:
    st.info(f"No {split} pairs into {ui.variety_label(target)}" + (f" containing “{ui.md(query)}”." if query else "."))
    st.stop()
pages = (len(pairs) + PAGE_SIZE - 1) // PAGE_SIZE
page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1) if pages > 1 else 1
chunk = pairs[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
src_codes = sorted({p.source_variety for p in chunk})
rows = "".join(
    f"<tr><td>{html.escape(p.id)}</td>{_cell(p.source, p.source_variety)}{_cell(p.target, p.target_variety)}</tr>"
    for p in chunk
)
st.markdown(
    f'<table class="dd-table"><thead><tr><th>id</th><th>source ({", ".join(src_codes)})</th>'
    f"<th>target ({html.escape(target)})</th></tr></thead><tbody>{rows}</tbody></table>",
    unsafe_allow_html=True,
)
st.caption(f"{len(pairs):,} pairs · showing {(page - 1) * PAGE_SIZE + 1}–{(page - 1) * PAGE_SIZE + len(chunk)}")
