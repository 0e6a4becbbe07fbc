"""One module per CLI command; see `backend/__main__.py`."""

from __future__ import annotations

import sys
from pathlib import Path

from backend.runs import write_text_atomic


def write_out(text: str, out: Path | None, wrote: str) -> None:
    """A command's CSV (or other text) to --out, written atomically and then announced as
    "wrote <wrote> to <out>", or else to stdout alone, so that it can be piped."""
    if out:
        write_text_atomic(out, text)
        print(f"wrote {wrote} to {out}")
    else:
        sys.stdout.write(text)
