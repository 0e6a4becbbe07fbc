"""`python -m backend jobs list|show|launch|cancel|resume|worker`: the background job queue.

The same operations the Train page offers; `worker` is what `launch` starts detached.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from backend import jobs
from backend.cli import train
from backend.cli.runs import table, when
from backend.cli.train import configs_from_args, dry_run
from backend.errors import JobError


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every job: state, progress, queue position, error")
    ls.add_argument("--active", action="store_true", help="only queued and running jobs")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = sub.add_parser("show", help="one job: state, progress, heartbeat, log tail")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    launch = sub.add_parser("launch", help="queue training runs (same options as `train`) and return")
    train.register(launch)
    cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("run_id")
    cancel.add_argument("--no-wait", action="store_true", help="return once the job has been asked to stop")
    cancel.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to stop")
    resume = sub.add_parser("resume", help="queue a failed or cancelled job again, from its last checkpoint")
    resume.add_argument("run_id")
    sub.add_parser("worker", help="run queued jobs one at a time until none is left (started by launch)")


def _progress(job: dict[str, Any]) -> str | None:
    prog = job.get("progress") or {}
    if prog.get("step") is None:
        return None
    return f"{prog['step']}/{prog.get('steps', job.get('steps'))}"


def _note(job: dict[str, Any]) -> str | None:
    state = job["state"]
    if state == "corrupt":
        return job.get("reason")
    if state == "queued":
        return f"#{job.get('position')} in queue" + (" (resume)" if job.get("resume") else "")
    if state == "running":
        prog = job.get("progress") or {}
        parts = []
        if prog.get("eta_s") is not None:
            parts.append(f"eta {prog['eta_s']:.0f} s")
        if job.get("cancel_requested"):
            parts.append("stopping")
        if job.get("stalled"):
            parts.append(f"no heartbeat for {job['heartbeat_age_s']:.0f} s")
        return ", ".join(parts) or "starting"
    if state in ("failed", "cancelled"):
        first = (job.get("error") or "").splitlines()[0] if job.get("error") else None
        resumable = "resumable" if job.get("has_checkpoint") else None
        return "; ".join(x for x in (first, resumable) if x) or None
    return None


def _loss(job: dict[str, Any]) -> str | None:
    loss = (job.get("progress") or {}).get("loss")
    return f"{loss:.3f}" if isinstance(loss, (int, float)) else None


def _print_job(job: dict[str, Any]) -> None:
    keys = ["id", "state", "method", "name", "dialects", "steps", "source", "pid", "queued_at", "started",
            "finished", "heartbeat_age_s", "position", "has_adapter", "has_checkpoint", "reason"]
    for key in keys:
        if job.get(key) is None or job.get(key) == "":
            continue
        if key == "heartbeat_age_s" and job["state"] != "running":
            continue
        value = when(job[key]) if key in ("queued_at", "started", "finished") else job[key]
        print(f"{key:16s} {','.join(value) if isinstance(value, list) else value}")
    if job.get("progress"):
        print("progress         " + ", ".join(f"{k} {v}" for k, v in job["progress"].items() if v is not None))
    if job.get("error"):
        print(f"error            {job['error'].splitlines()[0]}")
    if job.get("log_tail"):
        print("--- log.txt (tail) ---")
        print(job["log_tail"])


def main(args: argparse.Namespace) -> int:
    if args.action == "worker":
        return jobs.run_worker()
    if args.action == "list":
        rows = [j for j in jobs.list_jobs() if not args.active or j["state"] in jobs.ACTIVE]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        elif not rows:
            print("no jobs" + (" queued or running" if args.active else " yet"))
        else:
            print(table([[j["id"], j["state"], j.get("method"), _progress(j), _loss(j), _note(j)] for j in rows],
                        ["ID", "STATE", "METHOD", "STEP", "LOSS", "NOTE"]))
        return 0
    if args.action == "show":
        job = jobs.job_status(args.run_id)
        if args.json:
            print(json.dumps(job, ensure_ascii=False, indent=2))
        else:
            _print_job(job)
        return 0
    if args.action == "launch":
        if args.run_dir is not None or args.resume:
            raise JobError("jobs launch creates new runs; use `jobs resume ID` to continue one")
        if args.dry_run:
            return dry_run(configs_from_args(args))
        for config in configs_from_args(args):
            run = jobs.launch(config)
            print(f"queued {config.method:9s} {run.id}")
        return 0
    if args.action == "cancel":
        job = jobs.cancel(args.run_id, wait_s=0 if args.no_wait else args.timeout)
        print(f"{job['id']}: {job['state']}" + (" (stop requested)" if job["state"] == "running" else ""))
        return 0 if job["state"] in ("cancelled", "failed", "finished") or args.no_wait else 1
    if args.action == "resume":
        run = jobs.resume(args.run_id)
        print(f"queued {run.id} to resume from its last checkpoint")
        return 0
    return 2
