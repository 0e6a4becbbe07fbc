"""Name rules: hub ids (`owner/name`) and local names (a folder under models/).

The lowest layer of the input checks: it depends on nothing but `backend.errors`, so the
data loaders, the model loaders and `backend.safety` can all share one definition without
importing each other (the hub dataset loader used to import it from safety, which imports
the corpus spec parser, which imports the hub loader: a circle).
"""

from __future__ import annotations

import re

from backend.errors import PathError, UserError

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"{_NAME}/{_NAME}")
_LOCAL_NAME = re.compile(_NAME)


def is_hub_id(text: str) -> bool:
    """`owner/name` as the hub spells it (the one definition models and datasets share)."""
    return isinstance(text, str) and bool(_HUB_ID.fullmatch(text)) and ".." not in text and "--" not in text


def is_local_name(text: str) -> bool:
    """A name for a folder under models/: letters, digits, '-', '_', '.', and no path."""
    return isinstance(text, str) and bool(_LOCAL_NAME.fullmatch(text)) and ".." not in text


def validate_hub_id(repo_id: str, error: type[UserError] = PathError) -> str:
    """`owner/name` with letters, digits, '-', '_', '.' (at most 96 each), no '..' or '--'."""
    text = repo_id.strip() if isinstance(repo_id, str) else ""
    if not is_hub_id(text):
        shown = text[:80] + ("..." if len(text) > 80 else "")
        raise error(
            f"invalid hub id {shown!r}: use owner/name with letters, digits, '-', '_' and '.' "
            "(at most 96 characters each)"
        )
    return text
