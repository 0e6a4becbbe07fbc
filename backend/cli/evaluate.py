"""`python -m backend evaluate RUN_ID [RUN_ID]`: score a run on a held-out split.

With two run ids (baseline first, then decoupled) it also prints the comparison table with
paired-bootstrap p-values. `--base NAME` instead scores a bare base model (no adapter) on
the same table, so the starting point of every run can be seen: MSA -> each dialect, and
ENG -> MSA on the MSA row.

`--steer project|vector --strength S --layers L1,L2` evaluates with inference-time steering
(backend/steering.py, backend/arms.py): a run's results go to eval-steer-<slug>.json and
outputs-steer-<slug>.jsonl beside its eval.json, never over it.
"""

from __future__ import annotations

import argparse
import sys

from backend.data import load_corpus
from backend.errors import UserError
from backend.evaluation.report import comparison_markdown
from backend.runs import get_run


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
    steer = p.add_argument_group("inference-time steering (backend/steering.py); results go to "
                                 "eval-steer-<method>-s<strength>-L<layers>.json beside the run's eval.json")
    steer.add_argument("--steer", choices=["project", "vector"], default=None)
    steer.add_argument("--strength", type=float, default=1.0, help="project: 0..1; vector: 0..4 (default: 1)")
    steer.add_argument("--layers", default=None, help="e.g. 3,4 (default: the run's probe layers, else the "
                                                      "default layers)")
    steer.add_argument("--subspace", choices=["auto", "run", "estimate"], default="auto",
                       help="project: the run's saved subspace (auto with a run) or one estimated on the model")


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
    from backend.evaluation.evaluate import (  # lazy: sacrebleu, keeps 'evaluate --help' fast
        compare_runs,
        evaluate_base,
        evaluate_run,
    )

    if args.steer:
        return _steered(args)
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


def _steered(args: argparse.Namespace) -> int:
    """`evaluate RUN_ID... --steer ...` / `evaluate --base NAME --steer ...`: the same table with
    steering; a run's results are written beside its own eval.json, never over it."""
    from backend import steering  # lazy: torch, keeps the CLI light
    from backend.arms import evaluate_base_arm, evaluate_run_steered  # lazy: torch, keeps the CLI light

    spec = steering.SteerSpec(args.steer, args.strength, steering.parse_layers(args.layers))
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    kw = dict(split=args.split, max_sentences=args.max_sentences, batch_size=args.batch_size,
              max_new_tokens=args.max_new_tokens, num_beams=args.beams)
    if args.base is not None:
        if args.runs:
            raise UserError("give either run ids or --base, not both")
        corpus = load_corpus(args.source)
        dialects = args.dialects.split(",") if args.dialects else [
            v for v in corpus.target_varieties() if v not in ("MSA", "ENG")]
        report, _ = evaluate_base_arm(args.base, spec, corpus=corpus, corpus_spec=args.source, dialects=dialects,
                                      progress=say, **kw)
        _print_eval(report)
        print(f"steering: {report['steering']['origin']}")
        return 0
    if not args.runs:
        raise UserError("give one or more run ids, or --base NAME")
    for run_id in args.runs:
        report = evaluate_run_steered(get_run(run_id), spec, dialects=args.dialects, subspace=args.subspace,
                                      progress=say, **kw)
        _print_eval(report)
        print(f"steering: {report['steering']['method']} s={report['steering']['strength']:g} layers "
              f"{report['steering']['layers']}; {report['steering']['origin']}; written to {report['files']['eval']}")
    return 0
