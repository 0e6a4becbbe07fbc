"""The MADAR loader on small TSVs written here, and on the real English file from ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.data import load_corpus
from backend.data.madar import SPLIT_MAP, file_name, load_madar
from backend.errors import CorpusError, UnknownVarietyError

HEADER = "sentID.BTEC\tsplit\tlang\tsent\n"
ROWS = [  # id, MADAR split
    ("1", "corpus-6-train"), ("2", "corpus-6-test-corpus-26-train"), ("3", "corpus-6-dev"),
    ("4", "corpus-6-test-corpus-26-dev"), ("5", "corpus-6-test-corpus-26-test"),
]


def _write(folder: Path, name: str, lang: str, rows=ROWS, text=lambda sid: f"جملة {sid}", header=HEADER) -> Path:
    path = folder / f"MADAR.corpus.{name}.tsv"
    path.write_text(header + "".join(f"{sid}\t{split}\t{lang}\t{text(sid)} {lang}\n" for sid, split in rows),
                    encoding="utf-8")
    return path


@pytest.fixture()
def madar(tmp_path: Path) -> Path:
    _write(tmp_path, "MSA", "MSA")
    _write(tmp_path, "English", "EN", text=lambda sid: f"sentence {sid}")
    _write(tmp_path, "Cairo", "CAI")
    _write(tmp_path, "Beirut", "BEI")
    _write(tmp_path, "Rabat", "RAB", rows=ROWS[1:])  # a corpus-26 city: a subset of the ids
    (tmp_path / "MADAR.lexicon.tsv").write_text("not a corpus\n", encoding="utf-8")  # ignored
    return tmp_path


def test_loads_every_city_aligned_by_id_with_official_splits_mapped(madar):
    corpus = load_corpus(f"madar:{madar}")
    assert corpus.target_varieties() == ["BEI", "CAI", "MSA", "RAB"]
    assert corpus.source_varieties() == ["ENG", "MSA"]
    cairo = {p.id: p for p in corpus.filter(targets=("CAI",)).pairs}
    assert [(cairo[f"madar:{i}:CAI"].split) for i in "12345"] == ["train", "train", "dev", "dev", "test"]
    assert cairo["madar:3:CAI"].source == "جملة 3 MSA" and cairo["madar:3:CAI"].target == "جملة 3 CAI"
    assert len(corpus.filter(targets=("RAB",))) == 4
    eng_msa = corpus.filter(targets=("MSA",)).pairs
    assert len(eng_msa) == 5 and all(p.source_variety == "ENG" and p.source.startswith("sentence") for p in eng_msa)


def test_split_mapping_is_the_documented_one():
    assert {k: v for k, v in SPLIT_MAP.items() if k.startswith("corpus")} == {
        "corpus-6-train": "train", "corpus-6-test-corpus-26-train": "train",
        "corpus-6-dev": "dev", "corpus-6-test-corpus-26-dev": "dev",
        "corpus-6-test-corpus-26-test": "test",
    }


def test_english_source_and_city_subset_by_name_or_code(madar):
    corpus = load_corpus(f"madar:{madar}?cities=cairo,BEI&source=ENG")
    assert corpus.source_varieties() == ["ENG"]
    assert corpus.target_varieties() == ["BEI", "CAI", "MSA"]
    assert {p.source for p in corpus.pairs if p.id == "madar:2:BEI"} == {"sentence 2 EN"}
    assert load_corpus(f"madar:{madar}", cities=["RAB"], dialects="RAB").target_varieties() == ["RAB"]
    assert file_name("CAI") == "MADAR.corpus.Cairo.tsv" and file_name("ENG") == "MADAR.corpus.English.tsv"


def test_without_english_there_are_no_msa_target_rows(tmp_path):
    _write(tmp_path, "MSA", "MSA")
    _write(tmp_path, "Tunis", "TUN")
    assert load_madar(tmp_path).target_varieties() == ["TUN"]


def _error(folder: Path, **options) -> str:
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(CorpusError) as err:
        load_madar(folder, **options)
    assert sorted(p.name for p in folder.iterdir()) == before, "nothing may be written on error"
    message = str(err.value)
    assert "\n" not in message
    return message


def test_misaligned_id_names_file_and_line(madar):
    _write(madar, "Beirut", "BEI", rows=[*ROWS, ("99", "corpus-6-train")])
    assert _error(madar).startswith(f"{madar / 'MADAR.corpus.Beirut.tsv'}:7: sentence 99 has no line in MADAR.corpus.MSA.tsv")


def test_split_disagreement_is_a_misalignment(madar):
    _write(madar, "Cairo", "CAI", rows=[("1", "corpus-6-dev"), *ROWS[1:]])
    assert "MADAR.corpus.Cairo.tsv:2: sentence 1 is in dev here but in train in MADAR.corpus.MSA.tsv:2" in _error(madar)


def test_missing_column(madar):
    _write(madar, "Cairo", "CAI", header="sentID.BTEC\tsplit\tsent\n")
    assert "MADAR.corpus.Cairo.tsv:1: missing column(s) lang" in _error(madar)


def test_empty_text(madar):
    (madar / "MADAR.corpus.Cairo.tsv").write_text(
        HEADER + "1\tcorpus-6-train\tCAI\tنص\n4\tcorpus-6-test-corpus-26-dev\tCAI\t   \n", encoding="utf-8")
    assert "MADAR.corpus.Cairo.tsv:3: empty text for sentence 4" in _error(madar)


def test_malformed_line(madar):
    (madar / "MADAR.corpus.Cairo.tsv").write_text(
        HEADER + "1\tcorpus-6-train\tCAI\tنص\n2\tcorpus-6-train CAI نص بلا علامات جدولة\n", encoding="utf-8")
    assert "MADAR.corpus.Cairo.tsv:3: 2 tab-separated fields where the header has 4" in _error(madar)


def test_duplicate_id_unknown_split_and_wrong_lang(madar):
    _write(madar, "Cairo", "CAI", rows=[*ROWS, ("1", "corpus-6-train")])
    assert "Cairo.tsv:7: sentence 1 appears twice (first on line 2)" in _error(madar)
    _write(madar, "Cairo", "CAI", rows=[("1", "corpus-7-train")])
    assert "Cairo.tsv:2: unknown split 'corpus-7-train'" in _error(madar)
    _write(madar, "Cairo", "BEI")
    assert "Cairo.tsv:2: lang 'BEI' in the file for CAI" in _error(madar)


def test_not_utf8_and_empty_files(madar):
    (madar / "MADAR.corpus.Cairo.tsv").write_bytes(HEADER.encode() + b"1\tcorpus-6-train\tCAI\t\xff\xfe\n")
    assert "Cairo.tsv:2: not UTF-8 text" in _error(madar)
    (madar / "MADAR.corpus.Cairo.tsv").write_text("", encoding="utf-8")
    assert "Cairo.tsv:1: empty file" in _error(madar)


def test_unknown_missing_or_non_city_varieties(madar):
    with pytest.raises(UnknownVarietyError, match="unknown variety 'Atlantis'"):
        load_madar(madar, cities="CAI,Atlantis")
    assert "EGY is not a MADAR city (its cities: CAI, ALX, ASW)" in _error(madar, cities="EGY")
    assert "no MADAR.corpus.Aleppo.tsv (cities found: BEI, CAI, RAB)" in _error(madar, cities="ALE")
    assert "MADAR source must be MSA or ENG" in _error(madar, source="CAI")


def test_missing_source_file_or_folder(tmp_path, madar):
    (madar / "MADAR.corpus.MSA.tsv").unlink()
    assert "MADAR.corpus.MSA.tsv: not found; it is the source side (or pass source=ENG" in _error(madar)
    assert load_madar(madar, source="ENG").source_varieties() == ["ENG"]
    with pytest.raises(CorpusError, match="no such folder"):
        load_madar(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no MADAR.corpus.<City>.tsv files" in _error(empty)


def test_real_english_file_as_the_source_side(tmp_path, madar_english_tsv):
    # The English file is linked, never copied; the Cairo side is synthetic, on its ids.
    (tmp_path / madar_english_tsv.name).symlink_to(madar_english_tsv)
    lines = madar_english_tsv.read_text(encoding="utf-8").splitlines()[1:]
    corpus26 = [line.split("\t")[:2] for line in lines if "corpus-26" in line.split("\t")[1]]
    assert len(corpus26) == 2000
    _write(tmp_path, "Cairo", "CAI", rows=corpus26, text=lambda sid: f"جملة رقم {sid}")
    corpus = load_corpus(f"madar:{tmp_path}?source=ENG")
    assert corpus.source_varieties() == ["ENG"] and corpus.target_varieties() == ["CAI"]
    assert corpus.counts() == {("CAI", "train"): 1600, ("CAI", "dev"): 200, ("CAI", "test"): 200}
    english = {line.split("\t")[0]: line.split("\t")[3] for line in lines}
    assert all(p.source == " ".join(english[p.id.split(":")[1]].split()) for p in corpus.pairs)
    # with MSA as the source and no MSA file, the message says what to do
    assert "pass source=ENG" in _error(tmp_path)
