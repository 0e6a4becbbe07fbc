"""`python -m backend browse [PAIR]`: a run pair's evaluated test outputs as CSV, as the Browse page shows them.

PAIR is BASELINE_ID+DECOUPLED_ID (default: the newest pair); filters and sort as on the page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backend import browse, compare, varieties
from backend.browse import SORTS
from backend.cli import write_out
from backend.errors import RunError


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("pair", nargs="?", help="BASELINE_ID+DECOUPLED_ID (default: the newest finished pair)")
    p.add_argument("--variety", help="only this target variety (e.g. CAI)")
    p.add_argument("--search", default="", help="text in the source, reference or an output (normalised)")
    p.add_argument("--sort", choices=list(SORTS), default="diff_desc", help="row order (default: diff_desc)")
    p.add_argument("--only-different", action="store_true", help="only where baseline and decoupled differ")
    p.add_argument("--out", type=Path, help="the CSV file to write (default: stdout)")


def main(args: argparse.Namespace) -> int:
    if args.pair:
        pair = compare.get_pair(args.pair)
    else:
        pairs = compare.find_pairs()
        if not pairs:
            raise RunError("there is no finished run pair (python -m backend demo builds one)")
        pair = pairs[0]
    table = browse.pair_table(pair.baseline, pair.decoupled)
    rows = browse.select(table.rows, variety=varieties.code(args.variety) if args.variety else None,
                         query=args.search, sort=args.sort, only_different=args.only_different)
    write_out(browse.to_csv(rows, table.systems), args.out, f"{len(rows)} sentences of {pair.key}")
    return 0
