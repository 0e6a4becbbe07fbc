"""`python -m backend experiment --config experiments/NAME.yaml`: the paper's comparison end to end.

Base model -> baseline and decoupled adapters (same data, seed, steps) -> evaluation on the
held-out split -> models/experiments/<name>/results.json, results.md and figures/*.html.
Re-running skips finished stages; `--fresh` redoes them all (new runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True, help="experiment config, .yaml/.yml or .json")
    p.add_argument("--fresh", action="store_true", help="ignore cached stages: train and evaluate again")
    p.add_argument("--no-sweep", action="store_true", help="run the main setting only")


def main(args: argparse.Namespace) -> int:
    from backend.experiment import Experiment, load_config  # lazy: torch, keeps the CLI light

    config = load_config(args.config)
    if args.no_sweep:
        config.sweep = None
    command = "python -m backend experiment --config " + str(args.config) + (" --no-sweep" if args.no_sweep else "")
    experiment = Experiment(config, fresh=args.fresh, command=command)
    results = experiment.run()
    print((experiment.dir / "results.md").read_text(encoding="utf-8"))
    print(f"results: {experiment.dir / 'results.json'}", file=sys.stderr)
    return 0 if results else 1
