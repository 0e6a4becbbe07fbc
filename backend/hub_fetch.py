"""One way to download from the Hugging Face hub, for models and datasets alike.

`huggingface_hub.snapshot_download` (with its progress bar) writes into a hidden partial
folder beside the destination; the caller's check runs on it, and only then is it renamed
into place. A failed, interrupted or unusable download leaves nothing behind, so a folder
that exists is always complete and later calls work offline. Every hub or network failure
becomes one line in the caller's own error type.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_OFFLINE = {"1", "ON", "YES", "TRUE"}


def fetch_snapshot(repo_id: str, final: Path, *, what: str, allow_patterns: list[str],
                   error: type[Exception], check: Callable[[Path], T], repo_type: str | None = None) -> T:
    """Download `repo_id` to `final` (a folder) and return `check(folder)`'s result; `check`
    raises `error` for an unusable download. `what` names it in messages ("model", "dataset")."""
    from huggingface_hub import errors, is_offline_mode, snapshot_download  # lazy: 0.2 s; data/ imports this

    # is_offline_mode() reads HF_HUB_OFFLINE once, at import; the variable is read again so
    # that setting it later (an operator's shell, a test) still stops any download.
    if is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in _OFFLINE:
        raise error(f"cannot download {what} {repo_id}: offline mode (HF_HUB_OFFLINE=1) and it was not "
                    "downloaded before")
    parent_existed = final.parent.is_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-"))
    try:
        try:
            snapshot_download(repo_id, repo_type=repo_type, local_dir=partial, allow_patterns=allow_patterns)
        except errors.GatedRepoError:
            raise error(f"{what} {repo_id} is gated: accept its terms on huggingface.co and log in with "
                        "`hf auth login`") from None
        except errors.RepositoryNotFoundError:
            raise error(f"no {what} {repo_id!r} on the Hugging Face hub (wrong id, or private)") from None
        except Exception as e:  # network stacks raise many types; the user needs one line
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise error(f"cannot download {what} {repo_id} (offline or hub unreachable?): {reason}") from None
        shutil.rmtree(partial / ".cache", ignore_errors=True)
        result = check(partial)
        try:
            os.rename(partial, final)
        except OSError:
            if not final.is_dir():  # a concurrent download that finished first is fine
                raise
        return result
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
        if not parent_existed and final.parent.is_dir() and not any(final.parent.iterdir()):
            final.parent.rmdir()
