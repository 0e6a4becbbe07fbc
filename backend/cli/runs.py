"""`python -m backend runs list|show ID`: the run folders under models/runs, as tables."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from backend.jobs import list_jobs
from backend.runs import get_run


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """Plain aligned columns; None prints as '-'."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def when(stamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if isinstance(stamp, (int, float)) else None


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every run: method, state, dialects, adapter, chrF++")
    ls.add_argument("--state", help="only runs in this state (finished, failed, ...)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = sub.add_parser("show", help="one run: config, state, last metrics, evaluation")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")


def _chrf(run) -> str | None:
    report = run.eval() or {}
    value = (report.get("average") or {}).get("chrf") if isinstance(report, dict) else None
    return f"{value:.1f} ({report.get('split')})" if isinstance(value, (int, float)) else None


def main(args: argparse.Namespace) -> int:
    if args.action == "list":
        jobs = [j for j in list_jobs() if not args.state or j["state"] == args.state]
        if args.json:
            print(json.dumps(jobs, ensure_ascii=False, indent=2))
            return 0
        if not jobs:
            print("no runs yet (python -m backend train, or the Train page)")
            return 0
        rows = []
        for j in jobs:
            if j["state"] == "corrupt":
                rows.append([j["id"], None, "corrupt", None, None, None, None, j.get("reason")])
                continue
            run = get_run(j["id"])
            rows.append([j["id"], j["method"], j["state"], ",".join(j["dialects"]), j["steps"],
                         "yes" if j["has_adapter"] else "no", _chrf(run), j["name"] or None])
        print(table(rows, ["ID", "METHOD", "STATE", "DIALECTS", "STEPS", "ADAPTER", "CHRF++", "NAME / NOTE"]))
        return 0

    run = get_run(args.run_id)
    config, state, records = run.config(), run.state(), run.metrics()
    report = run.eval()
    if args.json:
        print(json.dumps({"id": run.id, "config": config.to_dict(), "state": state,
                          "last_metrics": records[-1] if records else None, "eval": report},
                         ensure_ascii=False, indent=2))
        return 0
    print(f"run      {run.id}\nfolder   {run.dir}\nstate    {state.get('state')}")
    print(f"adapter  {'complete' if run.has_adapter() else 'none'}")
    print("config:")
    for key, value in config.to_dict().items():
        print(f"  {key:16s} {value}")
    if records:
        last = records[-1]
        print(f"last step {last.get('step')}: loss {_num(last.get('loss'))}, penalty {_num(last.get('penalty'))}, "
              f"wall {last.get('wall_time')} s, {len(records)} records in metrics.jsonl")
    if isinstance(report, dict) and isinstance(report.get("varieties"), dict):
        rows = [[code, v.get("n"), _num(v.get("chrf")), _num(v.get("bleu")), _num(v.get("fidelity"))]
                for code, v in report["varieties"].items() if isinstance(v, dict)]
        print(f"evaluation on {report.get('split')}:")
        print(table(rows, ["VARIETY", "N", "CHRF++", "BLEU", "FIDELITY"]))
    return 0


def _num(x: Any) -> str | None:
    return f"{x:.2f}" if isinstance(x, (int, float)) else None
