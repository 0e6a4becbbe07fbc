"""The job queue, kept entirely in run folders so any process can read and repair it.

A job is a run folder whose state.json says `queued`, `running`, `finished`, `failed` or
`cancelled`. Pages and the CLI only ever read and change those files (under the queue
lock); the worker process (`backend.jobs.worker`) starts the training processes. Reading
also repairs: a `running` job whose process is gone (killed, out of memory, the machine
rebooted) becomes `failed` with the tail of its log, so nothing stays "running" forever
and the next queued job can start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from backend import paths, safety, varieties
from backend.data import load_corpus
from backend.data.sources import Spec
from backend.errors import JobError, UserError
from backend.jobs import process
from backend.jobs.locks import queue_lock, worker_pid, worker_running
from backend.runs import Run, RunConfig, create_run, get_run, list_runs, write_json_atomic

ACTIVE = ("queued", "running")
TERMINAL = ("finished", "failed", "cancelled")
STALE_S = 60.0  # a running job without a heartbeat for this long is shown as stalled
CANCEL_MARKER = "cancel.json"
LOG_TAIL_LINES = 15

_spawned: list[subprocess.Popen] = []


def cancel_grace_s() -> float:
    """Seconds between SIGTERM and SIGKILL for a job that does not stop (DD_CANCEL_GRACE_S)."""
    try:
        return max(0.0, float(os.environ.get("DD_CANCEL_GRACE_S", "20")))
    except ValueError:
        return 20.0


# --- reading states ------------------------------------------------------------------------

def _read_state(run: Run) -> tuple[dict[str, Any], str | None]:
    """(state, why the folder is corrupt or None): `Run.state`, and a config that loads."""
    try:
        run.config()
    except (UserError, OSError) as e:
        return {"state": "corrupt"}, str(e)
    state = run.state()
    if state.get("state") == "corrupt":
        return {"state": "corrupt"}, str(state.get("error"))
    return state, None


def _cancel_requested(run: Run) -> float | None:
    try:
        return float(json.loads((run.dir / CANCEL_MARKER).read_text())["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _identity(state: dict[str, Any]) -> tuple[int | None, float | None]:
    """(start ticks, started no later than) of the process a state names: what tells it
    from a later process that got the same pid."""
    started = state.get("started") or state.get("heartbeat")
    return state.get("pid_start"), started if isinstance(started, (int, float)) else None


def process_alive_for(state: dict[str, Any]) -> bool:
    """Whether the process named in a state is still the one that wrote it."""
    return process.process_alive(state.get("pid"), *_identity(state))


def _ours(state: dict[str, Any]) -> bool:
    """Whether this machine can judge the job's pid (run folders may sit on a shared disk)."""
    host = state.get("host")
    return not host or host == socket.gethostname()


def _needs_repair(state: dict[str, Any]) -> bool:
    """A `running` job whose process is gone, unless the live worker that started it will
    settle it itself (it knows the exit code) on its next poll."""
    if state.get("state") != "running" or not _ours(state):
        return False
    if state.get("worker") not in (None, os.getpid()) and state.get("worker") == worker_pid():
        return False
    if state.get("pid") is None:
        beat = state.get("heartbeat") or state.get("updated") or 0
        return time.time() - float(beat) > STALE_S
    return not process_alive_for(state)


def conclude(run: Run, returncode: int | None = None) -> dict[str, Any]:
    """Settle a job whose process has ended without writing a final state (caller holds the lock).

    A requested cancel makes it `cancelled`; anything else is `failed`, with the tail of
    log.txt in `error` so the page says what happened.
    """
    state, _ = _read_state(run)
    if state.get("state") != "running":
        return state
    if _cancel_requested(run) is not None:
        run.log("cancelled (the process ended after the cancel request)")
        return run.mark_cancelled()
    if returncode is None:
        how = "is gone (killed, out of memory, or the machine restarted)"
    elif returncode < 0:
        how = f"was killed by {process.signal_name(-returncode)}"
    else:
        how = f"exited with code {returncode} without reporting a result"
    tail = run.log_tail(LOG_TAIL_LINES)
    last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
    run.log(f"failed: the training process {how}")
    error = f"the training process {how}" + (f": {last[:300]}" if last else "")
    return run.mark_failed(error + (f"\n--- last lines of log.txt ---\n{tail}" if tail else ""))


def _settled_state(run: Run, verb: str) -> dict[str, Any]:
    """The state to act on, under the queue lock: readable (else a JobError saying why the
    run cannot be `verb`-ed) and with a dead `running` process already concluded."""
    state, reason = _read_state(run)
    if reason is not None:
        raise JobError(f"cannot {verb} {run.id}: {reason}")
    return conclude(run) if _needs_repair(state) else state


def repair(run: Run) -> dict[str, Any]:
    """The run's state, first settling a `running` job whose process is gone."""
    state, _ = _read_state(run)
    if not _needs_repair(state):
        return state
    with queue_lock():
        state, _ = _read_state(run)
        return conclude(run) if _needs_repair(state) else state


def has_checkpoint(run: Run) -> bool:
    return run.latest_checkpoint() is not None


def _status(run: Run, state: dict[str, Any], reason: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": run.id, "state": state.get("state"), "dir": str(run.dir)}
    if reason is not None:
        out.update(state="corrupt", reason=reason)
        return out
    config = run.config()
    now = time.time()
    beat = state.get("heartbeat")
    out.update(
        method=config.method, name=config.name, dialects=list(config.dialects), steps=config.steps,
        source=config.source, queued_at=state.get("queued_at"), started=state.get("started"),
        finished=state.get("finished"), pid=state.get("pid"), progress=state.get("progress") or None,
        error=state.get("error"), resume=bool(state.get("resume")),
        heartbeat_age_s=round(now - beat, 1) if isinstance(beat, (int, float)) else None,
        has_adapter=run.has_adapter(), has_checkpoint=has_checkpoint(run),
        cancel_requested=_cancel_requested(run) is not None,
    )
    out["stalled"] = out["state"] == "running" and (out["heartbeat_age_s"] or 0) > STALE_S
    return out


def _scan() -> list[tuple[Run, dict[str, Any], str | None]]:
    out = []
    for run in list_runs():
        try:
            state, reason = _read_state(run)
            if reason is None and _needs_repair(state):
                state = repair(run)
        except Exception as e:  # one broken folder must never hide the others
            state, reason = {"state": "corrupt"}, f"run {run.id}: {type(e).__name__}: {e}"
        out.append((run, state, reason))
    return out


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _queued(scan: list[tuple[Run, dict[str, Any], str | None]]) -> list[Run]:
    waiting = [(_number(s.get("queued_at")), r.id, r) for r, s, why in scan if why is None and s["state"] == "queued"]
    return [r for _, _, r in sorted(waiting, key=lambda x: (x[0], x[1]))]


def list_jobs() -> list[dict[str, Any]]:
    """Every run folder as a status dict, newest first; corrupt folders appear as `corrupt`
    with a `reason` and never hide the others. Starts a worker if jobs wait and none runs."""
    reap()
    scan = _scan()
    queue = _queued(scan)
    positions = {r.id: i + 1 for i, r in enumerate(queue)}
    out = []
    for run, state, reason in scan:
        if reason is None and state.get("state") not in ACTIVE:
            reason = run.damage()  # every file of a settled run, not only config and state
        try:
            status = _status(run, state, reason)
        except Exception as e:  # e.g. a config.json with values of the wrong type
            status = {"id": run.id, "state": "corrupt", "reason": f"run {run.id}: {type(e).__name__}: {e}",
                      "dir": str(run.dir)}
        if run.id in positions:
            status["position"] = positions[run.id]
        out.append(status)
    if queue:
        ensure_worker()
    return out


def job_status(run_id: str) -> dict[str, Any]:
    """One job's status (repaired, as in list_jobs) with the tail of its log."""
    run = get_run(run_id)
    state, reason = _read_state(run)
    if reason is None and _needs_repair(state):
        state = repair(run)
    status = _status(run, state, reason)
    status["log_tail"] = run.log_tail(LOG_TAIL_LINES)
    if status["state"] == "queued":
        queue = _queued(_scan())
        status["position"] = next((i + 1 for i, r in enumerate(queue) if r.id == run.id), None)
        if queue:
            ensure_worker()
    return status


def comparable_runs() -> list[Run]:
    """Runs that finished and hold a complete adapter: the only ones Compare may offer.
    A failed, cancelled or still running run never appears, whatever its folder holds."""
    return [run for run, state, reason in _scan() if reason is None and run.is_complete()]


# --- changing states -----------------------------------------------------------------------

def _count_train_pairs(config: RunConfig) -> int | None:
    """Training pairs the corpus offers for this run, when that is cheap to know (local files)."""
    if config.max_train_pairs is not None or Spec.parse(config.source).kind == "hub":
        return None
    targets = set(varieties.parse_list(config.dialects)) | ({"MSA"} if config.include_msa else set())
    corpus = load_corpus(config.source)
    return sum(1 for p in corpus.pairs if p.split == "train" and p.target_variety in targets)


def launch(config: RunConfig) -> Run:
    """Queue a training run: check the caps and paths, create its folder in state `queued`,
    and make sure a worker is running. Returns at once; the page then watches the folder."""
    config = safety.check_run_config(config)
    safety.check_dataset_size(config, _count_train_pairs(config))
    with queue_lock():
        safety.check_queue(len(_queued(_scan())))
        run = create_run(config)
        run.mark_queued(resume=False)
        run.log(f"queued {config.method} run (steps {config.steps}, source {config.source})")
        ensure_worker()
    return run


def cancel(run_id: str, wait_s: float = 0.0) -> dict[str, Any]:
    """Cancel a queued job at once, or ask a running one to stop (SIGTERM; SIGKILL after the
    grace period if it ignores it). With `wait_s`, wait up to that long for a final state."""
    run = get_run(run_id)
    with queue_lock():
        state = _settled_state(run, "cancel")
        current = state.get("state")
        if current == "queued":
            run.mark_cancelled()
            run.log("cancelled while queued")
            return job_status(run_id)
        if current != "running":
            raise JobError(f"run {run_id} is {current}; only a queued or running job can be cancelled")
        pid = state.get("pid")
        if not state.get("worker") and "backend" not in process.cmdline(pid):
            raise JobError(f"run {run_id} is training in process {pid}, which is not a job; stop it there")
        if _cancel_requested(run) is None:
            write_json_atomic(run.dir / CANCEL_MARKER, {"at": time.time()})
            run.log(f"cancel requested: SIGTERM sent to process {pid}")
            process.terminate(pid, *_identity(state))
    if wait_s > 0:
        return wait(run_id, timeout_s=wait_s)
    return job_status(run_id)


def enforce_cancel(run: Run, state: dict[str, Any]) -> None:
    """SIGKILL a job that was asked to stop more than the grace period ago and still runs."""
    asked = _cancel_requested(run)
    if asked is None or time.time() - asked < cancel_grace_s() or not process_alive_for(state):
        return
    run.log(f"the process did not stop within {cancel_grace_s():.0f} s of SIGTERM: SIGKILL")
    process.terminate(state["pid"], *_identity(state), sig=signal.SIGKILL)


def wait(run_id: str, timeout_s: float | None = None, poll_s: float = 0.25) -> dict[str, Any]:
    """Poll until the job reaches a final state (or `timeout_s` passes); returns its status.
    Also enforces a pending cancel, so waiting works even while no worker is alive."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = job_status(run_id)
        if status["state"] not in ACTIVE or (deadline is not None and time.monotonic() > deadline):
            return status
        if status["state"] == "running" and status.get("cancel_requested"):
            run = get_run(run_id)
            enforce_cancel(run, _read_state(run)[0])
        time.sleep(poll_s)


def resume(run_id: str) -> Run:
    """Queue a failed or cancelled run again; it continues from its last checkpoint."""
    run = get_run(run_id)
    with queue_lock():
        state = _settled_state(run, "resume")
        current = state.get("state")
        if current not in ("failed", "cancelled"):
            raise JobError(f"run {run_id} is {current}; only a failed or cancelled run can be resumed")
        if not has_checkpoint(run):
            raise JobError(f"run {run_id} stopped before its first checkpoint, so there is nothing to resume; "
                           "launch it again")
        safety.check_queue(len(_queued(_scan())))
        previous = {k: state.get(k) for k in ("state", "error", "finished") if state.get(k) is not None}
        run.mark_queued(resume=True, attempt=int(state.get("attempt", 1)) + 1, previous=previous)
        (run.dir / CANCEL_MARKER).unlink(missing_ok=True)
        run.log(f"queued again to resume after {current}")
        ensure_worker()
    return run


# --- the worker process --------------------------------------------------------------------

def _child_env() -> dict[str, str]:
    return dict(os.environ, DD_MODELS_DIR=str(paths.models_dir()))


def reap() -> None:
    """Collect the exit status of the workers this process started that have ended, so none
    stays a zombie of the app's process (list_jobs calls it on every refresh of the Train page)."""
    for p in list(_spawned):
        if p.poll() is not None:
            _spawned.remove(p)


def ensure_worker() -> bool:
    """Start a detached worker if none holds the worker lock; True if one was started."""
    reap()
    if worker_running():
        return False
    _spawned.append(process.spawn(["jobs", "worker"], paths.runs_dir() / ".worker.log", env=_child_env()))
    return True


def start(run: Run, state: dict[str, Any]) -> subprocess.Popen:
    """Start the training process of a queued job (caller holds the queue lock)."""
    args = ["train", "--run-dir", str(run.dir), *(["--resume"] if state.get("resume") else [])]
    (run.dir / CANCEL_MARKER).unlink(missing_ok=True)
    run.log(f"starting: {Path(sys.executable).name} -m backend {' '.join(args)}")
    child = process.spawn(args, run.log_path, env=_child_env())
    run.mark_running(child.pid, pid_start=process.start_ticks(child.pid), worker=os.getpid(),
                     host=socket.gethostname())
    return child


def next_action(scan: list[tuple[Run, dict[str, Any], str | None]]) -> tuple[str, Run | None, dict]:
    """What the worker does now: ("wait", run) for a live job it did not start, ("start",
    run) for the oldest queued job, or ("exit", None) when nothing is left."""
    for run, state, reason in scan:
        if reason is None and state.get("state") == "running" and _ours(state) and process_alive_for(state):
            return "wait", run, state
    queue = _queued(scan)
    if queue:
        return "start", queue[0], _read_state(queue[0])[0]
    return "exit", None, {}


def scan() -> list[tuple[Run, dict[str, Any], str | None]]:
    return _scan()


def state_of(run: Run) -> dict[str, Any]:
    return _read_state(run)[0]


