"""`python -m backend data`: look at a corpus before training on it.

    python -m backend data summary --source offline
    python -m backend data summary --source csv:../shared/data/dial2msa --dialects EGY,GLF
    python -m backend data show --source offline --variety CAI --split test -n 5

`summary` prints pairs per target variety (code and English name) and split, with totals;
`show` prints parallel pairs. A corpus problem prints one line naming file and line and
exits with status 2 (see backend/__main__.py).
"""

from __future__ import annotations

import argparse

from backend import varieties
from backend.data import load_corpus
from backend.data.corpus import SPLITS, ParallelCorpus
from backend.errors import CorpusError, UnknownVarietyError


def register(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("summary", "pairs per variety and split"), ("show", "print parallel pairs")):
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--source", default="offline",
                       help="offline[:msa_overlap=X,...], madar:DIR[?cities=..], csv:PATH[,PATH...], hub:OWNER/NAME")
        q.add_argument("--dialects", default=None, help="keep only these targets (codes or names, comma-separated)")
        if name == "show":
            q.add_argument("--variety", default=None, help="target variety (code or name)")
            q.add_argument("--split", choices=SPLITS, default=None)
            q.add_argument("-n", type=int, default=5, help="how many pairs (default 5)")


def _load(args: argparse.Namespace) -> ParallelCorpus:
    return load_corpus(args.source, dialects=args.dialects)


def summary_table(corpus: ParallelCorpus) -> str:
    counts = corpus.counts()
    rows = []
    for code in sorted(corpus.target_varieties(), key=_order):
        per_split = [counts.get((code, s), 0) for s in SPLITS]
        rows.append((code, _name(code), *per_split, sum(per_split)))
    totals = [sum(r[2 + i] for r in rows) for i in range(len(SPLITS))]
    width = max([len("variety"), *(len(r[1]) for r in rows)])
    head = f"{'code':<5} {'variety':<{width}} " + " ".join(f"{s:>7}" for s in (*SPLITS, "total"))
    lines = [head, "-" * len(head)]
    for code, name, *nums in rows:
        lines.append(f"{code:<5} {name:<{width}} " + " ".join(f"{n:>7,}" for n in nums))
    lines.append("-" * len(head))
    lines.append(f"{'':<5} {'total':<{width}} " + " ".join(f"{n:>7,}" for n in (*totals, sum(totals))))
    return "\n".join(lines)


def _name(code: str) -> str:
    try:
        return varieties.get(code).name
    except UnknownVarietyError:  # a code outside the registry still gets a row
        return code


def _order(code: str) -> tuple[int, str]:
    return (0 if code == "MSA" else 1, code)


def main(args: argparse.Namespace) -> int:
    if args.action == "show" and args.n < 1:
        raise CorpusError("-n must be at least 1")
    corpus = _load(args)
    if args.action == "summary":
        sources = ", ".join(corpus.source_varieties())
        print(f"{corpus.name}: {len(corpus):,} pairs; source side: {sources}")
        print(summary_table(corpus))
        return 0
    selected = corpus.filter(split=args.split)
    if args.variety:
        code = varieties.code(args.variety)
        selected = selected.filter(targets=(code,))
        if not selected.pairs:
            where = f" in {args.split}" if args.split else ""
            have = ", ".join(corpus.target_varieties())
            raise CorpusError(f"{corpus.name} has no {code} pairs{where}; its targets: {have}")
    for p in selected.pairs[: args.n]:
        print(f"{p.id}  [{p.split}]  {p.source_variety} -> {p.target_variety}")
        print(f"  {p.source_variety}: {p.source}")
        print(f"  {p.target_variety}: {p.target}")
    if not selected.pairs:
        print("no pairs")
    return 0
