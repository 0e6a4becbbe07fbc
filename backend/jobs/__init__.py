"""Background training jobs: what the Train page starts and every page watches.

Each run trains in its own process, never in the Streamlit script thread, and everything
about it lives in its run folder (state.json: state, pid, heartbeat, progress; log.txt), so
a reload, a closed tab or a restarted server finds the same jobs again.

    launch(config) -> Run        check caps and paths, queue the run, make sure a worker runs
    list_jobs() / job_status(id) read (and repair) the states: a dead process -> failed
    cancel(id) / resume(id)      stop a job cleanly; continue a failed or cancelled one
    comparable_runs()            finished runs with a complete adapter, nothing else

    queue.py    states on disk, repair, launch/cancel/resume
    worker.py   the single worker process that runs the queue (`python -m backend jobs worker`)
    locks.py    the queue lock and the worker lock (flock); the demo build's lock uses the same calls
    process.py  detached spawn; whether a pid is still the job's process; signals that check it first
"""

from backend.jobs.queue import (
    ACTIVE,
    TERMINAL,
    cancel,
    comparable_runs,
    ensure_worker,
    has_checkpoint,
    job_status,
    launch,
    list_jobs,
    repair,
    resume,
    wait,
)
from backend.jobs.worker import run_worker

__all__ = [
    "ACTIVE", "TERMINAL", "cancel", "comparable_runs", "ensure_worker", "has_checkpoint", "job_status",
    "launch", "list_jobs", "repair", "resume", "run_worker", "wait",
]
