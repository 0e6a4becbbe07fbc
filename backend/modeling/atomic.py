"""Folders that appear complete or not at all.

A model or adapter folder is written into a hidden temporary sibling and renamed into place
only once everything is on disk, so a crash, a full disk or a cancelled job never leaves a
half-written folder that a later load would trust.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of `final`; on success it replaces `final`.

    An existing `final` is moved aside first and deleted after the swap (directories cannot
    be swapped in one rename), so at every moment either the old or the new folder is whole.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{secrets.token_hex(4)}"
            os.rename(final, old)
        os.rename(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
