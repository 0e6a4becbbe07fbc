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

import os
import shutil
import tempfile
from pathlib import Path

from backend import paths
from backend.data.corpus import ParallelCorpus
from backend.data.tabular import load_tabular
from backend.errors import CorpusError
from backend.safety import is_hub_id

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

    from huggingface_hub import errors, is_offline_mode, snapshot_download

    if is_offline_mode():
        raise CorpusError(
            f"cannot download dataset {repo_id}: offline mode (HF_HUB_OFFLINE=1) and it was not downloaded before"
        )
    parent_existed = final.parent.is_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-"))
    try:
        try:
            snapshot_download(repo_id, repo_type="dataset", local_dir=partial, allow_patterns=PATTERNS)
        except errors.GatedRepoError:
            raise CorpusError(
                f"dataset {repo_id} is gated: accept its terms on huggingface.co and log in with `hf auth login`"
            ) from None
        except errors.RepositoryNotFoundError:
            raise CorpusError(f"no dataset {repo_id!r} on the Hugging Face hub (wrong id, or private)") from None
        except Exception as e:  # network stacks raise many types; the user needs one line
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CorpusError(f"cannot download dataset {repo_id} (offline or hub unreachable?): {reason}") from None
        shutil.rmtree(partial / ".cache", ignore_errors=True)
        if not any(p.suffix.lower() in (".csv", ".tsv", ".jsonl") for p in partial.rglob("*")):
            raise CorpusError(f"dataset {repo_id} has no .csv, .tsv or .jsonl files to load")
        corpus = load_tabular([partial], name=name, **options)
        try:
            os.rename(partial, final)
        except OSError:
            if not final.is_dir():  # a concurrent download that finished first is fine
                raise
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
        if not parent_existed and final.parent.is_dir() and not any(final.parent.iterdir()):
            final.parent.rmdir()
    return corpus
