"""Two lock files under runs_dir(), both `flock`ed, so they free themselves when a process dies.

- `.queue.lock`: held for a moment around every change of a job's state (start, cancel,
  resume, repair), so a cancel and a start never interleave.
- `.worker.lock`: held by the worker for its whole life. Whoever can take it for an instant
  knows no worker is running and starts one.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


def take_worker_lock() -> int | None:
    """The worker's lock as an open descriptor (close it to release), or None if taken."""
    fd = _open(".worker.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def worker_running() -> bool:
    fd = _open(".worker.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def worker_pid() -> int | None:
    try:
        text = (paths.runs_dir() / ".worker.lock").read_text().strip()
        return int(text) if text and worker_running() else None
    except (OSError, ValueError):
        return None
