"""The Spec object: every kind round-trips through str(), and with_options writes each
kind's own syntax (the bug: a madar option used to be glued onto the last option's value)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.data import Spec, load_corpus
from backend.data.sources import OPTIONS
from backend.errors import CorpusError

SPECS = [
    "offline",
    "offline:msa_overlap=0.5,seed=1",
    "offline:dialects=CAI,BEI,seed=2",
    "madar:/data/MADAR",
    "madar:/data/MADAR?cities=CAI,BEI&source=ENG",
    "csv:a.csv,b.tsv",
    "csv:dir?source_col=src&target_col=tgt&variety=EGY&split=train&source_variety=MSA",
    "hub:owner/name?variety=GLF&dialects=EGY",
]


@pytest.mark.parametrize("text", SPECS)
def test_every_kind_round_trips(text):
    spec = Spec.parse(text)
    assert str(spec) == text
    assert Spec.parse(str(spec)) == spec


@pytest.mark.parametrize(("text", "canonical"), [
    (" OFFLINE ", "offline"),
    ("offline:", "offline"),
    ("offline?size=300&source=ENG", "offline:size=300,source=ENG"),
    ("csv:dir?TARGET_COL=tgt", "csv:dir?target_col=tgt"),
])
def test_other_spellings_serialise_to_the_canonical_one(text, canonical):
    assert str(Spec.parse(text)) == canonical


def test_madar_option_is_a_new_option_not_part_of_the_last_value():
    # with_source_option('madar:/data/MADAR?cities=CAI', 'source', 'ENG') gave cities='CAI,source=ENG'
    spec = Spec.parse("madar:/data/MADAR?cities=CAI").with_options(source="ENG")
    assert spec.options == {"cities": "CAI", "source": "ENG"}
    assert Spec.parse(str(spec)).options == {"cities": "CAI", "source": "ENG"}


@pytest.mark.parametrize(("text", "options", "expected"), [
    ("offline:seed=1", {"msa_overlap": 0.2}, "offline:seed=1,msa_overlap=0.2"),
    ("offline", {"dialects": ["CAI", "BEI"]}, "offline:dialects=CAI,BEI"),
    ("madar:/d?cities=CAI", {"cities": "BEI"}, "madar:/d?cities=BEI"),
    ("csv:a.csv,b.tsv", {"variety": "EGY", "split": "train"}, "csv:a.csv,b.tsv?variety=EGY&split=train"),
    ("hub:o/n?variety=GLF", {"variety": None}, "hub:o/n"),
    ("hub:o/n", {"dialects": "EGY,LEV"}, "hub:o/n?dialects=EGY,LEV"),
])
def test_with_options_writes_each_kinds_syntax(text, options, expected):
    before = Spec.parse(text)
    after = before.with_options(**options)
    assert str(after) == expected
    assert Spec.parse(text) == before  # a new Spec; the old one is unchanged


@pytest.mark.parametrize(("text", "options", "words"), [
    ("csv:a.csv", {"cities": "CAI"}, "unknown option 'cities'"),
    ("madar:/d", {"variety": "EGY"}, "unknown option 'variety'"),
    ("offline", {"seed": " "}, "has no value"),
    ("madar:/d", {"cities": "CAI&source=ENG"}, "cannot be written"),
    ("offline", {"dialects": "CAI,seed=3"}, "cannot be written"),
    ("hub:o/n", {"variety": "a&b"}, "cannot be written"),
])
def test_with_options_refuses_what_would_not_read_back(text, options, words):
    with pytest.raises(CorpusError, match=words):
        Spec.parse(text).with_options(**options)


def test_csv_accepts_its_own_options_end_to_end(tmp_path: Path):
    # the old helper refused any option on csv:a,b ("it takes no options")
    for name in ("a.csv", "b.csv"):
        with open(tmp_path / name, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["msa", "dialect"])
            w.writerow([f"جملة {name}", f"كلام {name}"])
    spec = Spec("csv", f"{tmp_path / 'a.csv'},{tmp_path / 'b.csv'}")
    corpus = load_corpus(str(spec.with_options(source_col="msa", target_col="dialect", variety="EGY")))
    assert len(corpus) == 2
    assert corpus.target_varieties() == ["EGY"]


def test_with_target_and_paths():
    spec = Spec.parse("csv:a.csv, b.csv?variety=EGY")
    assert spec.paths == ["a.csv", "b.csv"]
    assert str(spec.with_target("/x/a.csv,/x/b.csv")) == "csv:/x/a.csv,/x/b.csv?variety=EGY"
    assert Spec.parse("madar:/d").paths == ["/d"]
    assert Spec.parse("hub:o/n").paths == []
    with pytest.raises(CorpusError):
        Spec.parse("offline").with_target("x")


_VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(OPTIONS)), data=st.data())
def test_with_options_either_round_trips_or_refuses(kind, data):
    key = data.draw(st.sampled_from([*OPTIONS[kind], "dialects"]))
    value = data.draw(_VALUE)
    base = Spec.parse("offline" if kind == "offline" else f"{kind}:x/y")
    try:
        spec = base.with_options(**{key: value})
    except CorpusError:
        return
    assert Spec.parse(str(spec)) == spec
    assert spec.options[key] == value.strip()
