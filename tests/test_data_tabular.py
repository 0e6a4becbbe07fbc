"""The CSV/TSV/JSONL loader: Dial2MSA from ../shared, small fixtures, every error path."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.data import load_corpus
from backend.data.tabular import load_tabular
from backend.errors import CorpusError, UnknownVarietyError, UserError


def _csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if delimiter == "\t":  # linguistic TSV: no quoting at all
        path.write_text("".join("\t".join(r) + "\n" for r in [header, *rows]), encoding="utf-8")
        return path
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _error(*args, **kwargs) -> str:
    with pytest.raises(CorpusError) as err:
        load_tabular(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


# ----------------------------------------------------------------------------- Dial2MSA


def test_loads_every_dial2msa_file(dial2msa_dir):
    files = sorted(dial2msa_dir.rglob("*.csv"))
    assert len(files) == 8
    expected: dict[tuple[str, str], int] = {}
    headers = set()
    for f in files:
        with open(f, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            headers.add(tuple(next(reader)))
            n = sum(1 for row in reader if row)
        expected[(f.stem.split("_")[0].upper(), f.parent.name)] = n
    assert len(headers) > 1, "the files' columns differ"
    corpus = load_corpus(f"csv:{dial2msa_dir}")
    assert corpus.counts() == expected
    assert len(corpus) == sum(expected.values())
    assert corpus.target_varieties() == ["EGY", "GLF", "LEV", "MGR"]
    assert {p.split for p in corpus.pairs} == {"train", "dev"}
    assert corpus.source_varieties() == ["MSA"]
    assert all(p.source and p.target and p.id.split(":")[0] in {f.stem for f in files} for p in corpus.pairs)
    # targets are the cleaned tweets, sources the (verified) MSA column of each file
    for f in files:
        with open(f, encoding="utf-8", newline="") as fh:
            first = next(csv.DictReader(fh))
        pair = next(p for p in corpus.pairs if p.id == f"{f.stem}:2")
        assert pair.target == " ".join(first["cleanedtweet2"].split())
        assert pair.source == " ".join((first.get("msa") or first["msa_verified"]).split())


def test_dial2msa_files_one_by_one_and_with_options(dial2msa_dir):
    egy = dial2msa_dir / "dev" / "egy_dev.csv"
    one = load_corpus(f"csv:{egy}")
    assert one.counts() == {("EGY", "dev"): len(one)}
    raw = load_corpus(f"csv:{egy}?target_col=tweet&variety=CAI&split=test")
    assert raw.counts() == {("CAI", "test"): len(one)}
    both = load_corpus(f"csv:{egy},{dial2msa_dir / 'dev' / 'glf_dev.csv'}", dialects="GLF")
    assert both.target_varieties() == ["GLF"]


# ----------------------------------------------------------------------------- fixtures


def test_detects_common_column_names_in_csv_tsv_and_jsonl(tmp_path):
    _csv(tmp_path / "lev_dev.csv", ["id", "src", "tgt"], [["1", "مرحبا", "مرحبا كيفك"], ["2", "شكرا, جزيلا", "يسلمو"]])
    _csv(tmp_path / "train" / "data.tsv", ["source", "target", "variety"],
         [['قال "نعم"', 'قال "اه"', "Cairo"], ["أين", "فين", "egy"]], delimiter="\t")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "more.jsonl").write_text(
        json.dumps({"msa": "كيف", "dialect": "كيفاش", "dialect_code": "RAB"}, ensure_ascii=False) + "\n\n",
        encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    _csv(tmp_path / ".hidden" / "x.csv", ["src", "tgt"], [["a", "b"]])  # hidden folders are skipped
    corpus = load_corpus(f"csv:{tmp_path}")
    got = {(p.id, p.source, p.target, p.target_variety, p.split) for p in corpus.pairs}
    assert got == {
        ("lev_dev:2", "مرحبا", "مرحبا كيفك", "LEV", "dev"),
        ("lev_dev:3", "شكرا, جزيلا", "يسلمو", "LEV", "dev"),
        ("data:2", 'قال "نعم"', 'قال "اه"', "CAI", "train"),
        ("data:3", "أين", "فين", "EGY", "train"),
        ("more:1", "كيف", "كيفاش", "RAB", "test"),
    }


def test_option_precedence_column_then_option_then_path(tmp_path):
    f = _csv(tmp_path / "dev" / "egy_train.csv", ["msa", "tweet", "split"], [["أ", "ب", ""], ["ج", "د", "test"]])
    # column > option > folder > file name; an empty cell falls back like a missing column
    assert [p.split for p in load_tabular([f]).pairs] == ["dev", "test"]
    assert [p.split for p in load_tabular([f], split="train").pairs] == ["train", "test"]
    assert [p.target_variety for p in load_tabular([f]).pairs] == ["EGY", "EGY"]
    assert [p.target_variety for p in load_tabular([f], variety="Tunis").pairs] == ["TUN", "TUN"]
    g = _csv(tmp_path / "misc" / "corpus_test.csv", ["msa", "tweet"], [["أ", "ب"]])
    assert load_tabular([g], variety="GLF").pairs[0].split == "test"
    h = _csv(tmp_path / "misc" / "pairs.csv", ["msa", "tweet"], [["أ", "ب"]])
    assert load_tabular([h], variety="GLF", source_variety="ENG").pairs[0].split == "train"
    assert load_tabular([h], variety="GLF", source_variety="ENG").pairs[0].source_variety == "ENG"


def test_same_stem_in_two_folders_keeps_ids_apart(tmp_path):
    _csv(tmp_path / "train" / "glf.csv", ["src", "tgt"], [["a", "b"]])
    _csv(tmp_path / "test" / "glf.csv", ["src", "tgt"], [["c", "d"]])
    corpus = load_tabular([tmp_path])
    assert sorted(p.id for p in corpus.pairs) == ["test/glf:2", "train/glf:2"]
    assert {p.split for p in corpus.pairs} == {"train", "test"}


def test_bom_and_crlf(tmp_path):
    f = tmp_path / "mgr.csv"
    f.write_bytes("\ufeffmsa,cleanedtweet\r\nأهلا,مرحبا بيك\r\n".encode())
    assert [(p.source, p.target, p.target_variety) for p in load_tabular([f]).pairs] == [("أهلا", "مرحبا بيك", "MGR")]


# ----------------------------------------------------------------------------- errors


def test_columns_missing_or_misnamed(tmp_path):
    f = _csv(tmp_path / "egy.csv", ["arabic", "english"], [["a", "b"]])
    assert _error([f]) == (f"{f}:1: cannot find the source text column (looked for msa, msa_verified, source, src); "
                           "columns: arabic, english; name it with source_col=")
    assert f"{f}:1: no column 'nope' for the target text; columns: arabic, english" in _error(
        [f], source_col="arabic", target_col="nope")
    assert "both 'arabic'" in _error([f], source_col="arabic", target_col="ARABIC")


def test_empty_text_names_file_line_and_column(tmp_path):
    f = _csv(tmp_path / "egy.csv", ["msa", "tweet"], [["a", "b"], ["c", "  "]])
    assert _error([f]) == f"{f}:3: empty text in column 'tweet'"


def test_wrong_field_count_bad_quoting_binary_and_encoding(tmp_path):
    f = tmp_path / "egy.csv"
    f.write_text("msa,tweet\na,b\nc,d,e\n", encoding="utf-8")
    assert _error([f]) == f"{f}:3: 3 fields where the header has 2"
    f.write_text('msa,tweet\na,"b"x\n', encoding="utf-8")
    assert _error([f]).startswith(f"{f}:2: malformed CSV")
    f.write_bytes(b"msa,tweet\na,b\nc,\x00\n")
    assert _error([f]) == f"{f}:3: contains a NUL byte (binary file?)"
    f.write_bytes(b"msa,tweet\na,b\nc,\xff\n")
    assert _error([f]).startswith(f"{f}:3: not UTF-8 text")
    j = tmp_path / "egy.jsonl"
    j.write_text('{"msa": "a", "tweet": "b"}\n[1, 2]\n', encoding="utf-8")
    assert _error([j]) == f"{j}:2: not a JSON object"
    j.write_text('{"msa": "a", "tweet": "b"}\n{"msa": "a"}\n', encoding="utf-8")
    assert _error([j]) == f"{j}:2: no 'tweet' in this object"
    j.write_text('{"msa": "a", "tweet": "b"}\n{"msa": \n', encoding="utf-8")
    assert _error([j]).startswith(f"{j}:2: not a JSON object (")


def test_empty_files_and_bad_paths(tmp_path):
    f = tmp_path / "egy.csv"
    f.write_text("", encoding="utf-8")
    assert _error([f]) == f"{f}:1: empty file (no header and no rows)"
    f.write_text("msa,tweet\n", encoding="utf-8")
    assert _error([f]) == f"{f}:1: a header but no rows"
    assert _error([tmp_path / "missing.csv"]) == f"{tmp_path / 'missing.csv'}: no such file or folder"
    (tmp_path / "empty").mkdir()
    assert "no .csv, .tsv or .jsonl files" in _error([tmp_path / "empty"])
    assert "empty path" in _error(["  "])
    assert "no CSV/TSV path" in _error([])


def test_unknown_or_missing_varieties_and_splits(tmp_path):
    f = _csv(tmp_path / "egy.csv", ["msa", "tweet", "variety", "split"], [["a", "b", "CAI", "dev"], ["c", "d", "Xanadu", "dev"]])
    with pytest.raises(UnknownVarietyError) as err:
        load_tabular([f])
    assert str(err.value).startswith(f"{f}:3: unknown variety 'Xanadu'")
    g = _csv(tmp_path / "egy_2.csv", ["msa", "tweet", "split"], [["a", "b", "holdout"]])
    assert _error([g]) == f"{g}:2: split 'holdout' is not train, dev or test"
    assert "split option 'later'" in _error([g], split="later")
    h = _csv(tmp_path / "pairs.csv", ["msa", "tweet"], [["a", "b"]])
    assert "cannot tell the target variety" in _error([h])
    assert "ENG cannot be a target variety" in _error([h], variety="English")
    with pytest.raises(UnknownVarietyError, match="source_variety option"):
        load_tabular([h], variety="EGY", source_variety="Klingon")


# ----------------------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".txt"]))
def test_random_bytes_raise_only_user_errors(data, suffix):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"egy_train{suffix}"
        path.write_bytes(data)
        try:
            corpus = load_tabular([path])
        except UserError:
            return
        assert all(p.source and p.target and p.target_variety == "EGY" for p in corpus.pairs)


_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(_cell, _cell), min_size=1, max_size=8))
def test_written_csv_rows_come_back_or_the_empty_one_is_named(rows):
    with tempfile.TemporaryDirectory() as d:
        path = _csv(Path(d) / "lev_dev.csv", ["msa_verified", "cleanedtweet2"], [list(r) for r in rows])
        # A row with every cell blank is a blank line and skipped; one blank text is an error.
        kept = [(a, b) for a, b in rows if a.strip() or b.strip()]
        half_blank = [(a, b) for a, b in kept if not a.split() or not b.split()]
        try:
            corpus = load_tabular([path])
        except CorpusError as e:
            assert ("empty text" in str(e)) if half_blank else (not kept and "no rows" in str(e))
            return
        assert kept and not half_blank
        assert [(p.source, p.target) for p in corpus.pairs] == [(" ".join(a.split()), " ".join(b.split())) for a, b in kept]
        assert {(p.target_variety, p.split) for p in corpus.pairs} == {("LEV", "dev")}
