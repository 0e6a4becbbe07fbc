"""`python -m backend demo`: build the demo models (base + baseline + decoupled, evaluated),
as the Welcome page's button does, printing progress in the terminal.

It runs the experiment pipeline (models/experiments/demo) with the demo's settings; a second
run reuses what is done. The status goes to models/demo/status.json too, so an open app shows
the same progress. `--background` starts the build detached and returns; `--status` and
`--cancel` look at or stop a build started either way. `--tiny` builds a throwaway demo in
about a minute, to check an install.
"""

from __future__ import annotations

import argparse
import json
import time

from backend import demo
from backend.demo import DemoOptions

_D = DemoOptions()
_FIELDS = ("name", "base_name", "base_preset", "base_steps", "source", "dialects", "steps", "batch_size",
           "max_length", "probe_every", "seed", "eval_sentences", "entanglement_pairs", "entanglement_probe_steps")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tiny", action="store_true",
                   help="a throwaway demo in about a minute (tiny base, CAI+BEI, 6 steps) to check an install; "
                        "the options below still override it")
    p.add_argument("--name", default=None, help=f"experiment id (default: {_D.name})")
    p.add_argument("--base-name", default=None, help=f"folder name under models/base (default: {_D.base_name})")
    p.add_argument("--preset", dest="base_preset", default=None,
                   help=f"pretraining preset for the base: tiny or small (default: {_D.base_preset})")
    p.add_argument("--base-steps", type=int, default=None, help="pretraining steps (default: the preset's)")
    p.add_argument("--source", default=None, help=f"corpus spec (default: {_D.source})")
    p.add_argument("--dialects", default=None, help=f"codes or names, comma-separated (default: {','.join(_D.dialects)})")
    p.add_argument("--steps", type=int, default=None, help=f"fine-tuning steps per adapter (default: {_D.steps})")
    p.add_argument("--batch-size", type=int, default=None, help=f"default: {_D.batch_size}")
    p.add_argument("--max-length", type=int, default=None, help=f"default: {_D.max_length}")
    p.add_argument("--probe-every", type=int, default=None, help=f"default: {_D.probe_every}")
    p.add_argument("--seed", type=int, default=None, help=f"default: {_D.seed}")
    p.add_argument("--eval-sentences", type=int, default=None,
                   help=f"test sentences per variety to evaluate, 0 for all (default: {_D.eval_sentences})")
    p.add_argument("--entanglement-pairs", type=int, default=None, help=f"default: {_D.entanglement_pairs}")
    p.add_argument("--entanglement-probe-steps", type=int, default=None, help=f"default: {_D.entanglement_probe_steps}")
    p.add_argument("--options", default=None, help=argparse.SUPPRESS)  # JSON, from start_background
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--background", action="store_true", help="start the build detached and return")
    mode.add_argument("--status", action="store_true", help="print the current build status as JSON")
    mode.add_argument("--cancel", action="store_true", help="stop a running build (the next build resumes it)")


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    if getattr(args, "options", None):
        return DemoOptions.from_json(args.options)
    given = {f: getattr(args, f) for f in _FIELDS if getattr(args, f, None) is not None}
    if isinstance(given.get("dialects"), str):
        given["dialects"] = [d for d in given["dialects"].split(",") if d.strip()]
    if given.get("eval_sentences") == 0:
        given["eval_sentences"] = None
    return DemoOptions.tiny(**given) if args.tiny else DemoOptions(**given)


def main(args: argparse.Namespace) -> int:
    if args.status:
        print(json.dumps(demo.demo_status(), ensure_ascii=False, indent=2))
        return 0
    if args.cancel:
        status = demo.cancel_demo()
        print(f"asked the demo build (pid {status.get('pid')}) to stop")
        return 0
    options = options_from_args(args)
    if args.background:
        status = demo.start_background(options)
        print(f"demo build started (pid {status.get('pid')}); log: {demo.log_path()}")
        return 0

    estimate = demo.format_duration(demo.estimate_demo_seconds(options))
    print(f"building the demo '{options.name}' (about {estimate}); progress also in {demo.status_path()}", flush=True)
    last = {"message": None, "time": 0.0}

    def show(status: dict) -> None:
        """One line per new message, and at most one progress line every 2 seconds."""
        step, steps = status.get("step"), status.get("steps")
        now = time.monotonic()
        if status.get("message") == last["message"] and now - last["time"] < 2:
            return
        counter = f" (step {step}/{steps})" if step is not None and steps and steps > 1 else ""
        print(f"[{100 * status.get('fraction', 0):5.1f}%] {status.get('message', '')}{counter}", flush=True)
        last.update(message=status.get("message"), time=now)

    status = demo.build_demo(options, on_status=show)
    if status.get("state") == "cancelled":
        print(status.get("message", "cancelled"))
        return 3
    runs = status.get("runs", {})
    print(f"done: base '{options.base_name}', baseline {runs.get('baseline')}, decoupled {runs.get('decoupled')}")
    print("open the app with `streamlit run app.py` and go to Compare")
    return 0
