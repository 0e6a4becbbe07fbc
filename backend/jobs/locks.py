"""Lock files, all `flock`ed, so they free themselves when a process dies.

- `.queue.lock` (under runs_dir()): held for a moment around every change of a job's state
  (start, cancel, resume, repair), so a cancel and a start never interleave.
- `.worker.lock` (under runs_dir()): held by the worker for its whole life. Whoever can
  take it for an instant knows no worker is running and starts one.
- any other long-lived holder (the demo build's `models/demo/build.lock`) uses the same
  three calls: `try_lock`, `is_locked`, `hold`.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backend import paths
from backend.errors import JobError

_local = threading.local()


def _open(name: str) -> int:
    folder = paths.runs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o644)


@contextmanager
def queue_lock(timeout_s: float = 30.0) -> Iterator[None]:
    """Exclusive access to the job states; re-entrant within a thread."""
    key = str(paths.runs_dir())
    held: dict[str, int] = _local.__dict__.setdefault("held", {})
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    fd = _open(".queue.lock")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise JobError(f"the job queue has been busy for {timeout_s:.0f} s; try again") from None
                time.sleep(0.05)
        held[key] = 1
        try:
            yield
        finally:
            held[key] = 0
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` as an open descriptor holding this process's pid (close
    it to release), or None if another holder has it. Its folder is created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def is_locked(path: Path) -> bool:
    """Whether some holder (this process included, through another descriptor) has `path`."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def hold(path: Path, busy: str) -> Iterator[None]:
    """Hold `path`'s lock for the block; a JobError saying `busy` if another holder has it."""
    fd = try_lock(path)
    if fd is None:
        raise JobError(busy)
    try:
        yield
    finally:
        os.close(fd)


def take_worker_lock() -> int | None:
    """The worker's lock as an open descriptor (close it to release), or None if taken."""
    return try_lock(paths.runs_dir() / ".worker.lock")


def worker_running() -> bool:
    return is_locked(paths.runs_dir() / ".worker.lock")


def worker_pid() -> int | None:
    try:
        text = (paths.runs_dir() / ".worker.lock").read_text().strip()
        return int(text) if text and worker_running() else None
    except (OSError, ValueError):
        return None
