"""`python -m backend ratings export|summary`: the blind ratings the Rate page stores.

`export` writes every answer as CSV (to --out, else to stdout); `summary` prints the
preference rates with their sign-test p-values and the inter-rater agreement.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend import ratings
from backend.cli import write_out


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ex = sub.add_parser("export", help="every answer as CSV")
    ex.add_argument("--out", type=Path, help="the CSV file to write (default: stdout)")
    ex.add_argument("--pair", help="only this run pair (BASELINE_ID+DECOUPLED_ID)")
    sm = sub.add_parser("summary", help="preference rates, sign-test p-values, agreement")
    sm.add_argument("--pair", help="only this run pair (BASELINE_ID+DECOUPLED_ID)")
    sm.add_argument("--json", action="store_true", help="print JSON instead of text")


def main(args: argparse.Namespace) -> int:
    if args.action == "export":
        text = ratings.export_csv(args.pair)
        write_out(text, args.out, f"{len(text.splitlines()) - 1} answers")
        return 0
    s = ratings.summary(args.pair)
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
        return 0
    if not s["answers"]:
        print("no ratings yet (the Rate page stores them)")
        return 0
    print(f"{s['answers']} answers, {s['items']} sentences, raters: {', '.join(s['raters'])}")
    for q, p in s["preference"].items():
        rate = "n/a" if p["decoupled_rate"] is None else f"{100 * p['decoupled_rate']:.1f}%"
        pv = "n/a" if p["p_value"] is None else f"{p['p_value']:.4f}"
        print(f"{q:8s} decoupled preferred {rate} (decoupled {p['decoupled']}, baseline {p['baseline']}, "
              f"ties {p['ties']}), sign test p = {pv}")
    for q, a in s["agreement"].items():
        if a["items"]:
            kappa = "n/a" if a["kappa"] is None else f"{a['kappa']:.2f}"
            print(f"{q:8s} agreement {100 * a['percent']:.0f}% on {a['items']} sentences, Cohen's kappa {kappa}")
    return 0
