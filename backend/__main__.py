"""The CLI: `python -m backend COMMAND ...` does everything the pages do.

Each command lives in `backend/cli/<command>.py` with `register(parser)` and
`main(args) -> int`; only the chosen one is imported, so `--help` and light commands start
without loading torch. A `UserError` prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from backend.errors import UserError

COMMANDS = {
    "data": ("backend.cli.data", "inspect corpora: summary, show"),
    "pretrain": ("backend.cli.pretrain", "build the small from-scratch base model"),
    "train": ("backend.cli.train", "fine-tune a baseline or decoupled LoRA adapter"),
    "generate": ("backend.cli.generate", "generate with a base model and adapters"),
    "evaluate": ("backend.cli.evaluate", "evaluate a run on a test split"),
    "experiment": ("backend.cli.experiment", "base -> baseline + decoupled -> evaluation -> tables"),
    "runs": ("backend.cli.runs", "list and show run folders"),
    "jobs": ("backend.cli.jobs", "background jobs: list, show, cancel, resume"),
    "demo": ("backend.cli.demo", "build the demo models on the offline corpus"),
    "browse": ("backend.cli.browse", "a run pair's evaluated test outputs as CSV"),
    "ratings": ("backend.cli.ratings", "blind ratings: export as CSV, summary"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).register(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    if not args.command:
        build_parser().print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.main(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
