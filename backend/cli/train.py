"""`python -m backend train`: fine-tune a baseline or decoupled LoRA adapter into a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend import varieties
from backend.runs import Run, RunConfig

_DEFAULTS = RunConfig()


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=["baseline", "decoupled", "both"], default="decoupled",
                   help="baseline: lambda 0 (probe observes only); both: baseline then decoupled, same seed")
    p.add_argument("--source", default=_DEFAULTS.source, help="corpus spec: offline[:...], madar:DIR, csv:PATH, hub:ID")
    p.add_argument("--dialects", default=",".join(_DEFAULTS.dialects), help="codes or names, comma-separated")
    p.add_argument("--base", default=_DEFAULTS.base, help="'default' (python -m backend pretrain), a folder or a hub id")
    p.add_argument("--steps", type=int, default=_DEFAULTS.steps)
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    p.add_argument("--lr", type=float, default=_DEFAULTS.learning_rate)
    p.add_argument("--lambda", dest="lam", type=float, default=_DEFAULTS.lam, help="weight of the decoupling penalty")
    p.add_argument("--lambda-warmup", type=int, default=_DEFAULTS.lam_warmup)
    p.add_argument("--layers", type=_ints, default=None, help="hidden-state layers, e.g. 3,4,5 (default: middle-upper)")
    p.add_argument("--probe-every", type=int, default=_DEFAULTS.probe_every)
    p.add_argument("--rank", dest="probe_rank", type=int, default=_DEFAULTS.probe_rank, help="max MSA-subspace rank")
    p.add_argument("--subspace", choices=["probe", "pca", "both"], default=_DEFAULTS.subspace)
    p.add_argument("--lora-rank", type=int, default=_DEFAULTS.lora_rank)
    p.add_argument("--lora-alpha", type=int, default=_DEFAULTS.lora_alpha)
    p.add_argument("--lora-dropout", type=float, default=_DEFAULTS.lora_dropout)
    p.add_argument("--lora-targets", default=",".join(_DEFAULTS.lora_targets))
    p.add_argument("--max-length", type=int, default=_DEFAULTS.max_length)
    p.add_argument("--max-train-pairs", type=int, default=None)
    p.add_argument("--no-msa", action="store_true", help="do not train on MSA targets")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--name", default="")
    p.add_argument("--per-dialect", action="store_true", help="one adapter per dialect instead of one for all")
    p.add_argument("--run-dir", type=Path, default=None, help="train the run whose config.json is in this folder")
    p.add_argument("--resume", action="store_true", help="with --run-dir: continue from the last checkpoint")


def configs_from_args(args: argparse.Namespace) -> list[RunConfig]:
    methods = ["baseline", "decoupled"] if args.method == "both" else [args.method]
    dialects = varieties.parse_list(args.dialects)
    groups = [[d] for d in dialects] if args.per_dialect else [dialects]
    out = []
    for group in groups:
        for method in methods:
            out.append(RunConfig(
                method=method, source=args.source, dialects=group, base=args.base, steps=args.steps,
                batch_size=args.batch_size, learning_rate=args.lr, lam=args.lam, lam_warmup=args.lambda_warmup,
                layers=args.layers, probe_every=args.probe_every, probe_rank=args.probe_rank,
                subspace=args.subspace, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
                lora_dropout=args.lora_dropout, lora_targets=[t for t in args.lora_targets.split(",") if t],
                max_length=args.max_length, max_train_pairs=args.max_train_pairs, include_msa=not args.no_msa,
                seed=args.seed, name=args.name or ("-".join(group) if args.per_dialect else ""),
            ))
    return out


def main(args: argparse.Namespace) -> int:
    from backend.training import EXIT_CANCELLED, train

    if args.run_dir is not None:
        run = Run(args.run_dir.resolve())
        run = train(run.config(), run=run, resume=args.resume)
        return EXIT_CANCELLED if run.state().get("state") == "cancelled" else 0
    for config in configs_from_args(args):
        run = train(config)
        state = run.state()
        print(f"{config.method:9s} {run.id}  {state.get('state')}  -> {run.dir}")
        if state.get("state") == "cancelled":
            return EXIT_CANCELLED
    return 0



