"""Rate: blind A/B judgements of baseline against decoupled outputs, stored at once (backend.ratings).

Which output is A is drawn at random for each item shown and never displayed; the answer
is written to SQLite as soon as it is saved, so a reload or a second rater loses nothing.
"""

from __future__ import annotations

import random

import streamlit as st

from backend import ratings
from backend.errors import UserError
from pages import _ui as ui

ui.password_gate()  # here too: a fresh server's first visitor to /<page> runs this file without app.py

CHOICES = {"A": "A", "B": "B", "tie": "Tie / cannot tell"}


st.title("Rate outputs blind")
st.markdown("You see a source sentence and two outputs, **A** and **B**: one from the baseline adapter and one from "
            "the decoupled adapter, in an order drawn at random for every sentence and not shown. Each answer is "
            "saved at once under your name.")

rater = st.session_state.get("rate_rater")
if not rater:
    typed = st.text_input("Your name or initials", key="rate_name", max_chars=ratings.MAX_NAME)
    if st.button("Start rating", type="primary", key="rate_start"):
        try:
            st.session_state["rate_rater"] = ratings.check_rater(typed)
            st.rerun()
        except UserError as e:
            st.error(ui.message(e))
    st.stop()

cols = st.columns([4, 1])
cols[0].caption(f"Rating as **{ui.md(rater)}**")
if cols[1].button("Change rater", key="rate_change"):
    st.session_state.pop("rate_rater", None)
    st.session_state.pop("rate_item", None)
    st.rerun()

pair, table = ui.choose_pair_table(
    "rate_pair", "There is no finished run pair to rate yet: build the demo models on the Welcome page.", home_link=True)
pair_key = pair.key
items = {(r.variety, r.id): r for r in table.rows}
done = ratings.rated_by(rater, pair_key)
remaining = [k for k in items if k not in done]
answered = len([k for k in done if k in items])
total = sum(ratings.pairs_rated().values())

st.progress(answered / max(1, len(items)), text=f"You have rated {answered} of {len(items)} sentences of this pair")
if total >= ratings.MIN_FOR_RESULTS:
    st.page_link("pages/results.py", label="See the preference rates on Results", icon=":material/bar_chart:")
if not remaining:
    st.success("You have rated every sentence of this pair. Thank you!")
    st.stop()

current = st.session_state.get("rate_item")
if not current or current[0] != pair_key or (current[1], current[2]) not in remaining:
    variety, sentence_id = random.SystemRandom().choice(remaining)
    current = (pair_key, variety, sentence_id, ratings.draw_side())
    st.session_state["rate_item"] = current
_, variety, sentence_id, shown_as_a = current
row = items[(variety, sentence_id)]
other = "decoupled" if shown_as_a == "baseline" else "baseline"
target = ui.variety_label(variety)

st.caption(f"Source ({row.source_variety}), to be written in {target}")
if row.source_variety == "ENG":
    st.text(row.source)
else:
    ui.rtl(row.source, card=True)
for col, (name, system) in zip(st.columns(2), (("A", shown_as_a), ("B", other))):
    with col:
        st.markdown(f"**{name}**")
        ui.rtl(row.systems[system].text, card=True)

n = f"{len(done)}_{abs(hash(current))}"  # fresh widget keys for every item: the radios start empty
with st.form(f"rate_form_{n}"):
    dialect = st.radio(ratings.QUESTIONS["dialect"].format(target=target), list(CHOICES), format_func=CHOICES.get,
                       index=None, horizontal=True, key=f"rate_dialect_{n}")
    meaning = st.radio(ratings.QUESTIONS["meaning"], list(CHOICES), format_func=CHOICES.get, index=None,
                       horizontal=True, key=f"rate_meaning_{n}")
    if st.form_submit_button("Save and next", type="primary"):
        if dialect is None or meaning is None:
            st.warning("Answer both questions (Tie when you cannot tell).")
        else:
            with ui.shown_errors("Saving the answer"):
                ratings.add(rater, pair_key, sentence_id, variety, shown_as_a, dialect, meaning)
                st.session_state.pop("rate_item", None)
                st.rerun()
