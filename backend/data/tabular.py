"""Parallel corpora in CSV, TSV or JSON-lines files: one row, one pair.

Real parallel data comes with whatever column names its authors chose (Dial2MSA alone uses
`msa` in some files and `msa_verified` in others), so columns are found by name from short
lists of common ones unless the user names them. Per file:

- source text: `source_col`, else the first of `msa`, `msa_verified`, `source`, `src`;
- target text: `target_col`, else `cleanedtweet2`, `cleanedtweet`, `tweet`, `target`,
  `tgt`, `dialect` (the cleaned tweet first: it has no handles, links or emoji);
- target variety: a `variety` or `dialect_code` column, else the `variety` option, else the
  file name's first part (`egy_train.csv` -> EGY, through the registry);
- split: a `split` column, else the `split` option, else the parent folder's name
  (`train/`, `dev/`, `test/`; `valid`/`validation` -> dev), else a `train`/`dev`/`test`
  part of the file name, else train.

An explicit option beats a guess from a path; a column beats both, since it speaks for
each row. `.tsv` files are read without quoting (linguistic TSVs contain bare quotes);
`.csv` files with standard CSV quoting; `.jsonl` one object per line. Text is stripped and
its runs of whitespace collapsed, nothing more. Any problem stops the load with the file
and line in the message; nothing is written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from backend import varieties
from backend.data.corpus import Pair, ParallelCorpus
from backend.errors import CorpusError, UnknownVarietyError

SOURCE_COLUMNS = ("msa", "msa_verified", "source", "src")
TARGET_COLUMNS = ("cleanedtweet2", "cleanedtweet", "tweet", "target", "tgt", "dialect")
VARIETY_COLUMNS = ("variety", "dialect_code")
SUFFIXES = (".csv", ".tsv", ".jsonl")
SPLIT_NAMES = {
    "train": "train", "training": "train",
    "dev": "dev", "valid": "dev", "validation": "dev", "val": "dev",
    "test": "test", "eval": "test",
    # MADAR's official split names, should a CSV export keep them.
    "corpus-6-train": "train", "corpus-6-test-corpus-26-train": "train",
    "corpus-6-dev": "dev", "corpus-6-test-corpus-26-dev": "dev",
    "corpus-6-test-corpus-26-test": "test",
}

csv.field_size_limit(1 << 24)


def normalize_split(value: str) -> str | None:
    return SPLIT_NAMES.get(str(value).strip().lower())


def _clean(text: object) -> str:
    return " ".join(str(text).split()) if text is not None else ""


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files named directly, and every .csv/.tsv/.jsonl below folders (hidden ones skipped)."""
    if not paths:
        raise CorpusError("no CSV/TSV path given; use csv:PATH[,PATH...] or csv:FOLDER")
    files: list[Path] = []
    for raw in paths:
        text = str(raw).strip()
        if not text:
            raise CorpusError("empty path in the csv source list")
        path = Path(text).expanduser()
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except (OSError, ValueError) as e:
            raise CorpusError(f"{text}: cannot be read ({e})") from None
        if is_dir:
            try:
                found = sorted(
                    p for p in path.rglob("*")
                    if p.suffix.lower() in SUFFIXES and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            except OSError as e:
                raise CorpusError(f"{path}: cannot list the folder ({e.strerror or e})") from None
            if not found:
                raise CorpusError(f"{path}: no .csv, .tsv or .jsonl files in this folder")
            files.extend(found)
        elif is_file:
            files.append(path)
        else:
            raise CorpusError(f"{path}: no such file or folder")
    return list(dict.fromkeys(files))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line}: not UTF-8 text (byte {e.start})") from None


def _rows(path: Path, text: str) -> Iterator[tuple[int, list[str] | dict]]:
    """(line number, row) for every non-blank row; the header comes first for CSV/TSV."""
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.split("\n"), 1):  # not splitlines: JSON may hold U+2028
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}:{number}: not a JSON object ({e.msg})") from None
            if not isinstance(obj, dict):
                raise CorpusError(f"{path}:{number}: not a JSON object")
            yield number, obj
        return
    tsv = path.suffix.lower() == ".tsv" or (path.suffix.lower() != ".csv" and "\t" in text.split("\n", 1)[0])
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise CorpusError(f"{path}:{line}: contains a NUL byte (binary file?)")
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter="\t" if tsv else ",",
        quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
        strict=not tsv,
    )
    try:
        for row in reader:
            if row and any(cell.strip() for cell in row):
                yield reader.line_num, row
    except csv.Error as e:
        raise CorpusError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], path: Path, role: str) -> str:
    by_name = {c.strip().lower(): c for c in columns}
    if wanted:
        if wanted.strip().lower() in by_name:
            return by_name[wanted.strip().lower()]
        raise CorpusError(f"{path}:1: no column {wanted!r} for the {role} text; columns: {', '.join(columns)}")
    for name in candidates:
        if name in by_name:
            return by_name[name]
    raise CorpusError(
        f"{path}:1: cannot find the {role} text column (looked for {', '.join(candidates)}); "
        f"columns: {', '.join(columns) or 'none'}; name it with {role}_col="
    )


def _target_code(value: str, where: str) -> str:
    try:
        v = varieties.get(value)
    except UnknownVarietyError as e:
        raise UnknownVarietyError(f"{where}: {e}") from None
    if v.kind == "source":
        raise CorpusError(f"{where}: {v.code} cannot be a target variety (targets are MSA or a dialect)")
    return v.code


def _guess_variety(path: Path) -> str | None:
    head = path.stem.replace("-", "_").replace(".", "_").split("_")[0]
    try:
        v = varieties.get(head)
    except UnknownVarietyError:
        return None
    return v.code if v.kind != "source" else None


def _guess_split(path: Path) -> str | None:
    folder = normalize_split(path.parent.name)
    if folder:
        return folder
    for part in path.stem.lower().replace("-", "_").replace(".", "_").split("_"):
        if part in ("train", "dev", "test", "valid", "validation"):
            return normalize_split(part)
    return None


def load_file(path: Path, source_col: str | None = None, target_col: str | None = None,
              variety: str | None = None, split: str | None = None, source_variety: str = "MSA",
              id_prefix: str | None = None) -> list[Pair]:
    """Pairs from one file (see the module docstring for how columns are chosen).

    Pair ids are `<file stem>:<line>` (or `id_prefix:<line>`), so an id leads back to the row.
    """
    rows = _rows(path, _read_text(path))
    first = next(rows, None)
    if first is None:
        raise CorpusError(f"{path}:1: empty file (no header and no rows)")
    jsonl = isinstance(first[1], dict)
    if jsonl:
        header = [str(k) for k in first[1]]
        pending: list[tuple[int, list[str] | dict]] = [first]
    else:
        header = [str(c).strip() for c in first[1]]
        pending = []
        if not any(header):
            raise CorpusError(f"{path}:{first[0]}: the header row is empty")
    src_col = _pick(header, source_col, SOURCE_COLUMNS, path, "source")
    tgt_col = _pick(header, target_col, TARGET_COLUMNS, path, "target")
    if src_col == tgt_col:
        raise CorpusError(f"{path}:1: the source and target columns are both {src_col!r}")
    lower = {c.lower(): c for c in header}
    var_col = next((lower[c] for c in VARIETY_COLUMNS if c in lower), None)
    split_col = lower.get("split")
    index = {c: i for i, c in enumerate(header)}

    default_variety = _target_code(variety, f"{path}: variety option") if variety else _guess_variety(path)
    default_split = None
    if split:
        default_split = normalize_split(split)
        if default_split is None:
            raise CorpusError(f"{path}: split option {split!r} is not train, dev or test")
    default_split = default_split or _guess_split(path) or "train"

    pairs: list[Pair] = []
    stem = id_prefix or path.stem
    for line, row in (*pending, *rows):
        if jsonl:
            assert isinstance(row, dict)
            missing = [c for c in (src_col, tgt_col) if c not in row]
            if missing:
                raise CorpusError(f"{path}:{line}: no {', '.join(map(repr, missing))} in this object")
            cell = {c: row.get(c) for c in (src_col, tgt_col, var_col, split_col) if c}
        else:
            assert isinstance(row, list)
            if len(row) != len(header):
                raise CorpusError(f"{path}:{line}: {len(row)} fields where the header has {len(header)}")
            cell = {c: row[index[c]] for c in (src_col, tgt_col, var_col, split_col) if c}
        source, target = _clean(cell[src_col]), _clean(cell[tgt_col])
        for text, col in ((source, src_col), (target, tgt_col)):
            if not text:
                raise CorpusError(f"{path}:{line}: empty text in column {col!r}")
        row_variety = _clean(cell.get(var_col)) if var_col else ""
        code = _target_code(row_variety, f"{path}:{line}") if row_variety else default_variety
        if code is None:
            raise CorpusError(
                f"{path}:{line}: cannot tell the target variety: add a variety column, name the file "
                f"like egy_train.csv, or pass variety="
            )
        row_split = _clean(cell.get(split_col)) if split_col else ""
        this_split = normalize_split(row_split) if row_split else default_split
        if this_split is None:
            raise CorpusError(f"{path}:{line}: split {row_split!r} is not train, dev or test")
        pairs.append(Pair(f"{stem}:{line}", source, source_variety, target, code, this_split))
    if not pairs:
        raise CorpusError(f"{path}:1: a header but no rows")
    return pairs


def load_tabular(paths: list[str | Path], source_col: str | None = None, target_col: str | None = None,
                 variety: str | None = None, split: str | None = None, source_variety: str = "MSA",
                 name: str | None = None) -> ParallelCorpus:
    """One corpus from every file named or found below the folders named."""
    try:
        src_v = varieties.get(source_variety)
    except UnknownVarietyError as e:
        raise UnknownVarietyError(f"source_variety option: {e}") from None
    files = expand_paths(paths)
    stems = [p.stem for p in files]
    pairs: list[Pair] = []
    for path in files:
        # Two files with one stem (train/data.csv, test/data.csv) keep ids apart by folder.
        prefix = path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}/{path.stem}"
        pairs.extend(load_file(path, source_col, target_col, variety, split, src_v.code, prefix))
    return ParallelCorpus(name or "csv:" + ",".join(str(p) for p in paths), pairs)
