"""The worker: `python -m backend jobs worker`, one detached process that runs the queue.

It holds `.worker.lock` for its whole life, so at most one exists. It starts the oldest
queued job as a child process (`python -m backend train --run-dir DIR [--resume]`, output
appended to DIR/log.txt, in a session of its own so signals reach the job and not the
worker), watches it, settles its state if the child ended without writing one, and moves
on. A job still running from a worker that was killed is waited for first: one heavy job
at a time. When the queue is empty the worker releases its lock inside the queue lock and
exits, so a job queued at that moment always finds either this worker or none.
"""

from __future__ import annotations

import os
import subprocess
import time

from backend.jobs import queue
from backend.jobs.locks import queue_lock, take_worker_lock
from backend.runs import Run


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} worker {os.getpid()}: {message}", flush=True)


def _supervise(run: Run, child: subprocess.Popen, poll_s: float) -> None:
    while child.poll() is None:
        queue.enforce_cancel(run, queue.state_of(run))
        time.sleep(poll_s)
    with queue_lock():
        state = queue.conclude(run, child.returncode)
    _say(f"{run.id} ended with code {child.returncode}: {state.get('state')}")


def _watch(run: Run, poll_s: float) -> None:
    """Wait for a job this worker did not start (its worker died) to end."""
    _say(f"{run.id} is still running from an earlier worker; waiting for it")
    while True:
        state = queue.state_of(run)
        if state.get("state") != "running" or not queue.process_alive_for(state):
            break
        queue.enforce_cancel(run, state)
        time.sleep(poll_s)
    queue.repair(run)


def run_worker(poll_s: float = 0.5) -> int:
    """Run queued jobs one at a time until none is left. Returns 0 at once if another
    worker holds the lock."""
    fd = take_worker_lock()
    if fd is None:
        return 0
    _say("started")
    try:
        while True:
            child = None
            with queue_lock():
                action, run, state = queue.next_action(queue.scan())
                if action == "exit":
                    os.close(fd)
                    fd = None
                    _say("queue empty, exiting")
                    return 0
                if action == "start":
                    try:
                        child = queue.start(run, state)
                    except OSError as e:
                        run.mark_failed(f"could not start: {e}")
                        continue
                    _say(f"started {run.id} (pid {child.pid})")
            if child is not None:
                _supervise(run, child, poll_s)
            else:
                _watch(run, poll_s)
    finally:
        if fd is not None:
            os.close(fd)
