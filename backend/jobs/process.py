"""Operating-system facts about a job: is its process alive, how to start and how to stop it.

Shared by the job queue (worker and training processes) and the demo build: `spawn` starts
a detached process, `terminate` signals one only while its pid still names it.

A run folder only stores a pid. A pid outlives nothing: once the process is gone the number
is free, and a zombie still answers `kill(pid, 0)`. So "alive" here means: the pid exists,
is not a zombie, and is the very process that was started (same start time in
/proc/<pid>/stat, or, for processes the job system did not start, a start no later than
the run's own start time).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from backend import paths

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
START_SLACK_S = 30.0  # clock granularity and drift when comparing wall-clock start times


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None where /proc is absent."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot: unique per process for a pid."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _started_at(ticks: int) -> float | None:
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - ticks / _CLOCK_TICKS)


def process_alive(pid: int | None, ticks: int | None = None, not_after: float | None = None) -> bool:
    """Whether `pid` still runs the process meant: `ticks` (its start_ticks) if known, else a
    process started no later than `not_after` (a wall-clock time)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to someone else
    fields = _stat(pid)
    if fields is None:
        return True  # no /proc: kill(pid, 0) is all we can know
    if fields[0] in ("Z", "X"):
        return False
    now_ticks = int(fields[19])
    if ticks is not None:
        return now_ticks == ticks
    if not_after is not None:
        started = _started_at(now_ticks)
        if started is not None and started > not_after + START_SLACK_S:
            return False  # the pid was reused by a younger process
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def send(pid: int, sig: int) -> bool:
    """Signal the job's whole process group when it leads one (jobs start in their own
    session), else the process alone. False if it was already gone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def terminate(pid: int | None, ticks: int | None = None, not_after: float | None = None,
              sig: int = signal.SIGTERM) -> bool:
    """Send `sig` to the process meant (see `process_alive`), never to whatever now holds a
    recycled pid. False if that process is gone."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not process_alive(pid, ticks, not_after):
        return False
    return send(pid, sig)


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None, reap: bool = False) -> subprocess.Popen:
    """Start `python -m backend ARGS` detached: in a session of its own (signals to it reach
    its children, and a closing app or terminal does not stop it), output appended to `log`.
    With `reap`, a daemon thread collects its exit status so it never stays a zombie."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    with open(log, "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "backend", *args], cwd=paths.REPO_ROOT, env=env,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    if reap:
        threading.Thread(target=child.wait, daemon=True).start()
    return child


def signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"
