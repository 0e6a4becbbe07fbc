"""Property-based fuzzing of the corpus loaders, as the app reaches them: a typed spec goes
through `safety.resolve_source_spec`, then `backend.data.load_corpus`. Whatever the spec or
the file contents, the outcome is a corpus or one of the project's own errors (a
UserError with a one-line message), never a traceback of something else."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from backend import safety
from backend.data import load_corpus
from backend.data.corpus import ParallelCorpus
from backend.errors import UserError

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    (root / "madar").mkdir(parents=True)
    (root / "csv").mkdir()
    (root / "csv" / "egy_train.csv").write_text("msa,tweet\nذهب الولد,راح الولد\nأريد,عايز\n", encoding="utf-8")
    (root / "csv" / "glf.tsv").write_text("source\ttarget\nهذا\tهذا\n", encoding="utf-8")
    (root / "madar" / "MADAR.corpus.MSA.tsv").write_text(
        "sentID.BTEC\tsplit\tlang\tsent\n1\tcorpus-26-train\tMSA\tأريد القهوة\n", encoding="utf-8")
    (root / "madar" / "MADAR.corpus.Cairo.tsv").write_text(
        "sentID.BTEC\tsplit\tlang\tsent\n1\tcorpus-26-train\tCAI\tعايز القهوة\n", encoding="utf-8")
    monkeypatch.setenv("DD_DATA_ROOTS", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def _load(spec: str) -> ParallelCorpus | None:
    """The app's path: resolve, then load. Only UserErrors may escape, each one line."""
    try:
        return load_corpus(safety.resolve_source_spec(spec))
    except UserError as e:
        message = str(e)
        assert message and "\n" not in message, repr(message)
        return None


_WORD = st.text(string.ascii_letters + string.digits + "_-./,:?&=~ \u0627\u0644", max_size=20)
_PATHS = st.sampled_from(["csv", "csv/egy_train.csv", "csv/glf.tsv", "madar", "..", "../..", "/etc", "/etc/passwd",
                          "~", "csv/../madar", "csv/missing.csv", "", " ", "madar/MADAR.corpus.MSA.tsv"])
_KEYS = st.sampled_from(["source_col", "target_col", "variety", "split", "source_variety", "cities", "source",
                         "dialects", "msa_overlap", "seed", "size", "bogus", ""])
_VALUES = st.one_of(_WORD, st.sampled_from(["CAI", "EGY", "MSA", "ENG", "train", "msa", "tweet", "Cairo,Beirut",
                                            "0.5", "-1", "1e9", "nan", ""]))
_QUERY = st.lists(st.tuples(_KEYS, _VALUES), max_size=3).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))


@st.composite
def file_specs(draw) -> str:
    kind = draw(st.sampled_from(["csv", "madar", "hub", "CSV", " csv", "tsv", "file"]))
    target = ",".join(draw(st.lists(st.one_of(_PATHS, _WORD), min_size=1, max_size=3)))
    query = draw(_QUERY)
    return f"{kind}:{target}" + (f"?{query}" if query or draw(st.booleans()) else "")


@st.composite
def offline_specs(draw) -> str:
    """Offline options stay small: a valid one generates a corpus, which costs time."""
    options = draw(st.lists(st.one_of(
        st.tuples(st.just("size"), st.one_of(st.integers(-5, 40).map(str), _WORD)),
        st.tuples(st.just("seed"), st.one_of(st.integers(-3, 3).map(str), _WORD)),
        st.tuples(st.just("msa_overlap"), st.one_of(st.floats(-1, 2).map(str), st.sampled_from(["nan", "inf", "-0"]), _WORD)),
        st.tuples(st.sampled_from(["source", "dialects", "bogus", ""]), _VALUES),
    ), max_size=3))
    sep = draw(st.sampled_from([",", "&"]))
    body = sep.join(f"{k}={v}" for k, v in options)
    if not any(k == "size" for k, _ in options):
        body = "size=20" + (sep + body if body else "")
    return f"offline:{body}"


@SETTINGS
@given(spec=st.text(max_size=80))
@example(spec="csv:../../../../etc/passwd")
@example(spec="madar:/")
@example(spec="csv:~nosuchuser/x.csv")
@example(spec="hub:")
@example(spec="hub:a/b?variety=EGY")
@example(spec="\x00")
def test_any_typed_text_as_a_spec(data_root, spec):
    assume(not spec.strip().lower().startswith("offline"))  # offline specs have their own strategy
    _load(spec)


@SETTINGS
@given(spec=file_specs())
def test_structured_file_specs(data_root, spec):
    corpus = _load(spec)
    if corpus is not None:
        assert isinstance(corpus, ParallelCorpus)
        for pair in corpus.pairs:
            assert pair.source and pair.target and pair.split in ("train", "dev", "test")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=offline_specs())
def test_offline_specs(data_root, spec):
    _load(spec)


_CELL = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
_ROWS = st.lists(st.lists(_CELL, max_size=5), max_size=6)


@SETTINGS
@given(suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]),
       header=st.lists(st.sampled_from(["msa", "tweet", "source", "target", "variety", "split", "dialect_code",
                                        "x", "", "msa"]), max_size=5),
       rows=_ROWS, sep=st.sampled_from([",", "\t", ";", '"']), query=_QUERY,
       raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_any_file_contents(data_root, suffix, header, rows, sep, query, raw):
    path = data_root / "csv" / f"fuzz_train{suffix}"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text("\n".join(sep.join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    _load(f"csv:csv/fuzz_train{suffix}" + (f"?{query}" if query else ""))


@SETTINGS
@given(msa=st.one_of(st.binary(max_size=150), _ROWS.map(lambda rs: "\n".join("\t".join(r) for r in rs).encode())),
       cairo=st.one_of(st.binary(max_size=150), _ROWS.map(lambda rs: "\n".join("\t".join(r) for r in rs).encode())),
       keep_header=st.booleans())
def test_any_madar_contents(data_root, msa, cairo, keep_header):
    header = b"sentID.BTEC\tsplit\tlang\tsent\n" if keep_header else b""
    (data_root / "madar" / "MADAR.corpus.MSA.tsv").write_bytes(header + msa)
    (data_root / "madar" / "MADAR.corpus.Cairo.tsv").write_bytes(header + cairo)
    _load("madar:madar")
