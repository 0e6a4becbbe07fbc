"""Parallel corpora from a Hugging Face dataset repository.

`hub:OWNER/NAME` downloads the repository's .csv, .tsv and .jsonl files once with
`huggingface_hub.snapshot_download` (which shows a progress bar) into
`models/datasets/OWNER--NAME/` and reads them with the CSV/TSV loader, so the same column
options apply. The id is checked before any network call. The download goes to a hidden
partial folder that is renamed into place only after its files have loaded as a corpus:
an interrupted download, a failed one or an unusable dataset leaves nothing behind, and a
folder that is there is always a complete, loadable dataset, so later calls work offline.
"""

from __future__ import annotations

from pathlib import Path

from backend import paths
from backend.data.corpus import ParallelCorpus
from backend.data.tabular import load_tabular
from backend.errors import CorpusError
from backend.hub_fetch import fetch_snapshot
from backend.names import is_hub_id

PATTERNS = ["*.csv", "*.tsv", "*.jsonl", "**/*.csv", "**/*.tsv", "**/*.jsonl"]
is_repo_id = is_hub_id  # the hub spells dataset ids like model ids


def datasets_dir() -> Path:
    return paths.models_dir() / "datasets"


def load_hub(repo_id: str, **options: str | None) -> ParallelCorpus:
    """The corpus in a hub dataset; `options` are the CSV loader's (source_col, variety...)."""
    repo_id = str(repo_id).strip()
    if not is_repo_id(repo_id):
        raise CorpusError(
            f"{repo_id!r} is not a Hugging Face dataset id; write it as owner/name "
            "(letters, digits, '-', '_', '.')"
        )
    name = f"hub:{repo_id}"
    final = datasets_dir() / repo_id.replace("/", "--")
    if final.is_dir():
        return load_tabular([final], name=name, **options)

    def usable(folder: Path) -> ParallelCorpus:
        if not any(p.suffix.lower() in (".csv", ".tsv", ".jsonl") for p in folder.rglob("*")):
            raise CorpusError(f"dataset {repo_id} has no .csv, .tsv or .jsonl files to load")
        return load_tabular([folder], name=name, **options)

    return fetch_snapshot(repo_id, final, what="dataset", allow_patterns=PATTERNS, error=CorpusError,
                          check=usable, repo_type="dataset")
