"""`python -m backend train`: fine-tune a baseline or decoupled LoRA adapter into a run folder.

Every RunConfig field is one flag named after it (`lora_rank` -> `--lora-rank`), with the
field's help text and default: the flags are derived from RunConfig, never copied by hand.
`--dry-run` prints the resolved settings and a GPU memory estimate, and trains nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from backend import memory, safety
from backend.errors import UserError
from backend.runs import Run, RunConfig, parse_setting, setting_fields

_DEFAULTS = RunConfig()
# Spellings from before the flags were derived, kept as aliases (not shown in --help).
ALIASES = {"learning_rate": ["--lr"], "lam": ["--lambda"], "lam_warmup": ["--lambda-warmup"]}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser_for(name: str) -> Callable[[str], Any]:
    """argparse's `type` for a field: the one text parser, its UserError shown as a usage error."""

    def parse(text: str) -> Any:
        try:
            return parse_setting(name, text)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def register(p: argparse.ArgumentParser) -> None:
    for f in setting_fields():
        meta = f.metadata
        default = f.default_factory() if f.default is MISSING else f.default
        help_text = f"{meta['help']} (default: {_shown(default)})"
        if f.type == "bool":
            p.add_argument(flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=help_text)
            continue
        choices = meta.get("choices")
        if f.name == "method":
            choices = (*choices, "both")
            help_text += "; both: baseline then decoupled, same seed"
        elif choices and f.type.endswith("| None"):
            choices = (*choices, None)  # `--quantize none` sets it back (the text parser gives None)
        p.add_argument(flag(f.name), dest=f.name, type=_parser_for(f.name), default=argparse.SUPPRESS,
                       choices=choices, help=help_text,
                       metavar=f.name.upper() if choices is None else "{" + ",".join(map(_shown, choices)) + "}")
        for alias in ALIASES.get(f.name, ()):
            p.add_argument(alias, dest=f.name, type=_parser_for(f.name), default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)
    p.add_argument("--no-msa", dest="include_msa", action="store_false", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.add_argument("--rank", dest="old_rank", default=None, help=argparse.SUPPRESS)
    p.add_argument("--preset", default=None, choices=list(memory.PRESETS),
                   help="a real model with suggested settings: " + "; ".join(
                       f"{n}: {pr.hub_id}" for n, pr in memory.PRESETS.items()) + " (flags given win)")
    p.add_argument("--per-dialect", action="store_true", help="one adapter per dialect instead of one for all")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved settings and a GPU memory estimate; train nothing, write nothing")
    p.add_argument("--run-dir", type=Path, default=None, help="train the run whose config.json is in this folder")
    p.add_argument("--resume", action="store_true", help="with --run-dir: continue from the last checkpoint")


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields set on the command line (flags not given are absent)."""
    names = {f.name for f in setting_fields()}
    return {k: v for k, v in vars(args).items() if k in names}


def configs_from_args(args: argparse.Namespace) -> list[RunConfig]:
    if getattr(args, "old_rank", None) is not None:
        raise UserError("--rank is gone: it meant the probe's rank; use --probe-rank (or --lora-rank "
                        "for the adapter's)")
    given = given_settings(args)
    if args.preset:
        given = memory.apply_preset(args.preset, given)
    method = given.pop("method", _DEFAULTS.method)
    methods = ["baseline", "decoupled"] if method == "both" else [method]
    dialects = RunConfig(**{**given, "method": methods[0]}).dialects  # validates every field once
    groups = [[d] for d in dialects] if args.per_dialect else [dialects]
    out = []
    for group in groups:
        for m in methods:
            name = given.get("name") or ("-".join(group) if args.per_dialect else "")
            out.append(RunConfig(**{**given, "method": m, "dialects": group, "name": name}))
    return out


def _resolved(name: str, value: Any) -> str:
    """What an automatic setting becomes on this machine, for the dry run to show."""
    if name != "dtype" or value != "auto":
        return ""
    from backend.modeling.device import pick_device, weights_dtype  # lazy: torch, keeps --help fast

    device = pick_device()
    return f"  (here: {str(weights_dtype(value, device)).removeprefix('torch.')} on {device.type})"


def dry_run(configs: list[RunConfig]) -> int:
    """Print what would be trained and the memory it needs; nothing is written."""
    checked = [safety.check_run_config(c) for c in configs]
    for config in checked:
        print(f"# {config.method}")
        for f in setting_fields():
            print(f"{f.name} = {_shown(getattr(config, f.name))}{_resolved(f.name, getattr(config, f.name))}")
    est = memory.estimate_for(checked[0])
    if est is None:
        print(f"memory: cannot estimate for {checked[0].base!r} offline (not a preset, no config.json here); "
              f"presets: {', '.join(memory.PRESETS)}")
    else:
        print(f"memory: {est.summary()}; from {est.basis}; {est.lora_params:,} LoRA parameters")
    print(f"dry run: {len(checked)} run(s), nothing trained or written")
    return 0


def main(args: argparse.Namespace) -> int:
    from backend.distributed import is_main_launch  # lazy: torch, keeps --help fast
    from backend.training import EXIT_CANCELLED, train  # lazy: torch, keeps --help fast

    if args.run_dir is not None:
        run = Run(args.run_dir.resolve())
        if args.dry_run:
            return dry_run([run.config()])
        run = train(run.config(), run=run, resume=args.resume)
        return EXIT_CANCELLED if run.state().get("state") == "cancelled" else 0
    configs = configs_from_args(args)
    if args.dry_run:
        return dry_run(configs)
    for config in configs:
        run = train(config)
        state = run.state()
        if is_main_launch():  # under accelerate, one line per run, not one per process
            print(f"{config.method:9s} {run.id}  {state.get('state')}  -> {run.dir}")
        if state.get("state") == "cancelled":
            return EXIT_CANCELLED
    return 0
