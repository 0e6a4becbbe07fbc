"""`python -m backend evaluate RUN_ID [RUN_ID]`: score a run on a held-out split.

With two run ids (baseline first, then decoupled) it also prints the comparison table with
paired-bootstrap p-values. `--base NAME` instead scores a bare base model (no adapter) on
the same table, so the starting point of every run can be seen: MSA -> each dialect, and
ENG -> MSA on the MSA row.
"""

from __future__ import annotations

import argparse
import sys


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN_ID", help="one run, or a baseline and a decoupled run")
    p.add_argument("--base", default=None, help="evaluate this bare base model instead of runs ('default', a "
                                                 "folder or a hub id)")
    p.add_argument("--source", default="offline", help="corpus for --base (default: offline)")
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--dialects", default=None, help="a subset of the run's dialects (codes or names); with "
                                                     "--base, any dialects of the corpus (default: all)")
    p.add_argument("--max-sentences", type=int, default=None, help="per variety")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--skip-existing", action="store_true", help="reuse a run's eval.json when it is for this split")


def _print_eval(report: dict) -> None:
    who = f"base {report['base']}" if report.get("run") is None else f"run {report['run']} ({report['method']})"
    print(f"{who} on {report['split']}  "
          f"[identifier accuracy on {report['split']} references: {report['identifier']['accuracy']:.3f}]")
    print(f"{'variety':8s} {'n':>5s} {'chrF++':>7s} {'BLEU':>6s} {'fidelity':>9s} {'MSA leak':>9s}")
    for code, v in report["varieties"].items():
        print(f"{code:8s} {v['n']:5d} {v['chrf']:7.2f} {v['bleu']:6.2f} {v['fidelity']:9.3f} {v['msa_leakage']:9.3f}")
    a = report["average"]
    if a.get("chrf") is not None:
        print(f"{'AVG':8s} {a['n']:5d} {a['chrf']:7.2f} {a['bleu']:6.2f} {a['fidelity']:9.3f} {a['msa_leakage']:9.3f}")
    print(f"chrF++: {report['signatures']['chrf']}")
    print(f"BLEU:   {report['signatures']['bleu']}")


def main(args: argparse.Namespace) -> int:
    from backend.errors import UserError
    from backend.evaluation.evaluate import compare_runs, evaluate_base, evaluate_run
    from backend.evaluation.report import comparison_markdown
    from backend.runs import get_run

    if args.base is not None:
        if args.runs:
            raise UserError("give either run ids or --base, not both")
        _print_eval(evaluate_base(args.base, source=args.source, split=args.split, dialects=args.dialects,
                                  max_sentences=args.max_sentences, batch_size=args.batch_size,
                                  max_new_tokens=args.max_new_tokens, num_beams=args.beams,
                                  progress=lambda m: print(m, file=sys.stderr)))
        return 0
    if not args.runs or len(args.runs) > 2:
        raise UserError("give one run id, or two (baseline, then decoupled), or --base NAME")
    for run_id in args.runs:
        run = get_run(run_id)
        existing = run.eval()
        if args.skip_existing and existing and existing.get("split") == args.split:
            report = existing
        else:
            report = evaluate_run(run, split=args.split, dialects=args.dialects, max_sentences=args.max_sentences,
                                  batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                                  num_beams=args.beams, progress=lambda m: print(m, file=sys.stderr))
        _print_eval(report)
    if len(args.runs) == 2:
        print()
        print(comparison_markdown(compare_runs(*args.runs)))
    return 0
