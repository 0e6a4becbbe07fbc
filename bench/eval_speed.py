"""Evaluation speed: 200 held-out sentences of one dialect, generation included.

What `evaluate_run` does per sentence, timed end to end for batch sizes 1, 8 and 32:
greedy generation with the KV cache (prompts sorted by length, left padding), corpus
chrF++ and BLEU, sentence chrF++, and the dialect identifier's label. The model is the
default base, or a run's adapter on its base with `--run`. The issue's bar: 200 sentences
in at most 30 s on the development CPU.

    python bench/eval_speed.py                  # 200 sentences, default base, CAI
    python bench/eval_speed.py --quick          # 40 sentences
    python bench/eval_speed.py --run RUN_ID     # a trained adapter instead of the bare base
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 sentences instead of 200")
    parser.add_argument("--n", type=int, default=None, help="number of sentences (default 200, 40 with --quick)")
    parser.add_argument("--dialect", default="CAI")
    parser.add_argument("--source", default="offline")
    parser.add_argument("--base", default="default")
    parser.add_argument("--run", default=None, help="evaluate this run's adapter (on its own base)")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    import torch

    from backend import varieties
    from backend.data import load_corpus
    from backend.evaluation import metrics
    from backend.evaluation.evaluate import identifier_for
    from backend.modeling import generate, load_adapter, load_base
    from backend.prompts import DEFAULT_FORMAT, Prompter
    from backend.runs import get_run

    n = args.n or (40 if args.quick else 200)
    dialect = varieties.code(args.dialect)
    base, template = args.base, DEFAULT_FORMAT
    if args.run:
        config = get_run(args.run).config()
        base, template = config.base, config.prompt_format
    corpus = load_corpus(args.source)
    pairs = [p for p in corpus.pairs if p.target_variety == dialect and p.split == "test"]
    if len(pairs) < n:  # a small corpus: fill up from dev, then train, for timing only
        pairs += [p for p in corpus.pairs if p.target_variety == dialect and p.split != "test"]
    pairs = pairs[:n]
    ident, _ = identifier_for(corpus)
    model, tokenizer = load_base(base)
    if args.run:
        model = load_adapter(model, get_run(args.run).adapter_dir, "bench")
    prompter = Prompter(tokenizer, template)
    prompts = [prompter(p.source, p.source_variety, dialect) for p in pairs]
    refs = [p.target for p in pairs]
    params = sum(p.numel() for p in model.parameters())
    print(f"model {base}{' + ' + args.run if args.run else ''} ({params / 1e6:.2f}M parameters), "
          f"{len(pairs)} {dialect} sentences from {args.source}, max {args.max_new_tokens} new tokens, greedy, "
          f"{torch.get_num_threads()} torch threads, device {next(model.parameters()).device}")
    generate(model, tokenizer, prompts[:4], batch_size=4, max_new_tokens=8)  # warm-up
    for bs in [int(x) for x in args.batch_sizes.split(",") if x.strip()]:
        start = time.perf_counter()
        hyps = generate(model, tokenizer, prompts, batch_size=bs, max_new_tokens=args.max_new_tokens)
        gen = time.perf_counter() - start
        scores = metrics.corpus_scores(hyps, refs)
        for h, r in zip(hyps, refs):
            metrics.sentence_chrf(h, r)
        labels = ident.predict(hyps)
        total = time.perf_counter() - start
        fid = sum(label == dialect for label in labels) / len(labels)
        print(f"batch {bs:3d}: {len(pairs) / total:7.1f} sentences/s  total {total:6.2f} s "
              f"(generation {gen:6.2f} s, scoring {total - gen:5.2f} s)  chrF++ {scores['chrf']:.2f}  "
              f"fidelity {fid:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
