"""The MADAR parallel corpus (v1.1 layout): one TSV per variety, aligned by sentence id.

A folder holds `MADAR.corpus.<Name>.tsv` files with the columns `sentID.BTEC split lang
sent`, where <Name> is a city's English name (Cairo, Rabat...), `MSA` or `English`; names
are looked up in the registry, so aliases (Fez, Sana'a) work too. Every city sentence is a
translation of the BTEC sentence with the same id, so pairs are built by id: source side
(MSA by default, or English) -> each city. The English and MSA files also give ENG -> MSA
pairs (or MSA is a target when English is the source), so the MSA trade-off can be
measured on the same data.

MADAR's official splits are kept and mapped onto train/dev/test:

    corpus-6-train, corpus-6-test-corpus-26-train  -> train
    corpus-6-dev,   corpus-6-test-corpus-26-dev    -> dev
    corpus-6-test-corpus-26-test                   -> test

(The corpus-6 cities have 12,000 sentences, the other 20 cities only the 2,000 of
corpus-26; a city file may therefore cover a subset of the source's ids, but an id the
source lacks, or a split that disagrees with the source, is a misalignment and an error.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from backend import varieties
from backend.data.corpus import Pair, ParallelCorpus
from backend.errors import CorpusError, UnknownVarietyError

COLUMNS = ("sentID.BTEC", "split", "lang", "sent")
SPLIT_MAP = {
    "corpus-6-train": "train",
    "corpus-6-test-corpus-26-train": "train",
    "corpus-6-dev": "dev",
    "corpus-6-test-corpus-26-dev": "dev",
    "corpus-6-test-corpus-26-test": "test",
    "train": "train",
    "dev": "dev",
    "test": "test",
}
_FILE = re.compile(r"^MADAR\.corpus\.(.+)\.tsv$", re.IGNORECASE)


@dataclass(frozen=True)
class Row:
    line: int
    split: str
    text: str


def file_name(code: str) -> str:
    """`CAI` -> `MADAR.corpus.Cairo.tsv` (`MSA` -> `...MSA.tsv`, `ENG` -> `...English.tsv`)."""
    v = varieties.get(code)
    return f"MADAR.corpus.{'MSA' if v.code == 'MSA' else v.name}.tsv"


def find_files(folder: Path) -> dict[str, Path]:
    """Variety code -> file for every MADAR.corpus.<Name>.tsv whose name the registry knows."""
    found: dict[str, Path] = {}
    try:
        listing = sorted(folder.iterdir())
    except OSError as e:
        raise CorpusError(f"{folder}: cannot list the folder ({e.strerror or e})") from None
    for path in listing:
        m = _FILE.match(path.name)
        if not m or not path.is_file():
            continue
        try:
            v = varieties.get(m.group(1))
        except UnknownVarietyError:
            continue  # other MADAR files (lexicon, profiles) or unrelated TSVs
        if v.kind in ("city", "msa", "source") and v.code not in found:
            found[v.code] = path
    return found


def read_tsv(path: Path, code: str) -> dict[str, Row]:
    """sentID -> Row for one variety's file; any defect raises CorpusError with file:line."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line}: not UTF-8 text") from None
    rows: dict[str, Row] = {}
    header: dict[str, int] | None = None
    width = 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if header is None:
            names = [f.strip() for f in fields]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise CorpusError(
                    f"{path}:{number}: missing column(s) {', '.join(missing)}; a MADAR TSV has "
                    f"{' '.join(COLUMNS)} (found: {' '.join(names)})"
                )
            header = {name: names.index(name) for name in COLUMNS}
            width = len(names)
            continue
        if len(fields) != width:
            raise CorpusError(f"{path}:{number}: {len(fields)} tab-separated fields where the header has {width}")
        sid = fields[header["sentID.BTEC"]].strip()
        raw_split = fields[header["split"]].strip()
        lang = fields[header["lang"]].strip()
        sent = " ".join(fields[header["sent"]].split())
        if not sid:
            raise CorpusError(f"{path}:{number}: empty sentID.BTEC")
        if not sent:
            raise CorpusError(f"{path}:{number}: empty text for sentence {sid}")
        split = SPLIT_MAP.get(raw_split.lower())
        if split is None:
            raise CorpusError(f"{path}:{number}: unknown split {raw_split!r}; expected one of {', '.join(SPLIT_MAP)}")
        if lang:
            try:
                lang_code = varieties.code(lang)
            except UnknownVarietyError:
                lang_code = None
            if lang_code is not None and lang_code != code:
                raise CorpusError(f"{path}:{number}: lang {lang!r} in the file for {code}")
        if sid in rows:
            raise CorpusError(f"{path}:{number}: sentence {sid} appears twice (first on line {rows[sid].line})")
        rows[sid] = Row(number, split, sent)
    if header is None:
        raise CorpusError(f"{path}:1: empty file (expected the header {' '.join(COLUMNS)})")
    if not rows:
        raise CorpusError(f"{path}:1: a header but no sentences")
    return rows


def _parse_cities(cities: str | list[str] | None, available: dict[str, Path]) -> list[str]:
    available_cities = [c for c in available if varieties.get(c).kind == "city"]
    if cities is None or (isinstance(cities, str) and not cities.strip()):
        return available_cities
    codes = varieties.parse_list(cities)
    for c in codes:
        v = varieties.get(c)
        if v.kind != "city":
            hint = f" (its cities: {', '.join(v.members)})" if v.members else ""
            raise CorpusError(f"{c} is not a MADAR city{hint}; cities= lists city codes such as CAI,BEI")
    return codes


def load_madar(folder: str | Path, cities: str | list[str] | None = None, source: str = "MSA") -> ParallelCorpus:
    """MADAR pairs: source (MSA or ENG) -> each chosen city, plus the MSA/English pairs."""
    folder = Path(str(folder)).expanduser()
    if not folder.is_dir():
        raise CorpusError(f"{folder}: no such folder (madar:DIR expects the folder of MADAR.corpus.*.tsv files)")
    source_code = varieties.code(str(source))
    if source_code not in ("MSA", "ENG"):
        raise CorpusError(f"MADAR source must be MSA or ENG, not {source_code}")
    files = find_files(folder)
    codes = _parse_cities(cities, files)
    if not codes:
        raise CorpusError(f"{folder}: no MADAR.corpus.<City>.tsv files (e.g. {file_name('CAI')})")
    if source_code not in files:
        other = "ENG" if source_code == "MSA" else "MSA"
        raise CorpusError(
            f"{folder / file_name(source_code)}: not found; it is the source side "
            f"(or pass source={other} if {file_name(other)} is there)"
        )
    missing = [c for c in codes if c not in files]
    if missing:
        have = ", ".join(c for c in files if varieties.get(c).kind == "city") or "none"
        raise CorpusError(
            f"{folder}: no {', '.join(file_name(c) for c in missing)} (cities found: {have})"
        )

    src_path = files[source_code]
    src_rows = read_tsv(src_path, source_code)
    pairs: list[Pair] = []
    # The MSA row of the trade-off: ENG -> MSA whenever both files are there.
    if "MSA" in files and "ENG" in files:
        eng_rows = src_rows if source_code == "ENG" else read_tsv(files["ENG"], "ENG")
        msa_rows = src_rows if source_code == "MSA" else read_tsv(files["MSA"], "MSA")
        pairs.extend(_aligned(eng_rows, files["ENG"], msa_rows, files["MSA"], "ENG", "MSA"))
    for code in codes:
        rows = read_tsv(files[code], code)
        pairs.extend(_aligned(src_rows, src_path, rows, files[code], source_code, code))
    name = f"madar:{folder}"
    return ParallelCorpus(name, pairs)


def _aligned(src: dict[str, Row], src_path: Path, tgt: dict[str, Row], tgt_path: Path,
             src_code: str, tgt_code: str) -> list[Pair]:
    pairs = []
    for sid, row in tgt.items():
        s = src.get(sid)
        if s is None:
            raise CorpusError(
                f"{tgt_path}:{row.line}: sentence {sid} has no line in {src_path.name} (misaligned files)"
            )
        if s.split != row.split:
            raise CorpusError(
                f"{tgt_path}:{row.line}: sentence {sid} is in {row.split} here but in {s.split} "
                f"in {src_path.name}:{s.line}"
            )
        pairs.append(Pair(f"madar:{sid}:{tgt_code}", s.text, src_code, row.text, tgt_code, row.split))
    return pairs
