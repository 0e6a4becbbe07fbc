"""Latency of one Compare-page comparison (base + baseline + decoupled) after the first load.

Loads the newest finished run pair (the demo models by default) once, warms up, then times
`backend.compare.compare` on test sentences of the pair's dialects: the one batched call the
page makes (peft mixed-adapter batch), and, for reference, three sequential generate calls.
Each figure includes generation (greedy, up to 48 new tokens), the dialect identifier and
sentence chrF++ against the reference.

    python bench/compare_latency.py                 # newest pair, 20 comparisons
    python bench/compare_latency.py --repeats 50 --pair BASELINE_ID+DECOUPLED_ID
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default=None, help="pair key BASELINE_ID+DECOUPLED_ID (default: the newest)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import torch

    from backend import compare, paths

    pairs = compare.find_pairs()
    if not pairs:
        print(f"no finished run pair under {paths.runs_dir()}; build one with `python -m backend demo`")
        return 2
    pair = compare.get_pair(args.pair) if args.pair else pairs[0]
    config = pair.config()
    start = time.perf_counter()
    pm = compare.load_pair_model(pair)
    load_s = time.perf_counter() - start

    sentences = []
    for target in pair.trained_varieties():
        if target == "MSA":
            continue
        for p in compare.split_examples(config.source, target, "test", limit=max(1, args.repeats)):
            if p.source_variety == "MSA":
                sentences.append((p.source, target, p.target))
    sentences = sentences[: args.repeats] or [("أريد أن أشرب القهوة الآن", config.dialects[0], None)]
    compare.compare(pm, *sentences[0][:2], reference=sentences[0][2])  # warm-up

    def timed(batched: bool) -> list[float]:
        pm.mixed_batch = batched
        times = []
        for i in range(args.repeats):
            source, target, reference = sentences[i % len(sentences)]
            t = time.perf_counter()
            result = compare.compare(pm, source, target, reference=reference)
            times.append(time.perf_counter() - t)
            assert result.batched == batched
        return times

    batched = timed(True)
    sequential = timed(False)
    params = sum(p.numel() for p in pm.model.base_model.model.parameters())
    print(f"pair: {pair.key}  base: {config.base} ({params / 1e6:.2f}M parameters incl. adapters)")
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"device {next(pm.model.parameters()).device}")
    print(f"first load (base + 2 adapters + identifier): {load_s:.2f} s")
    for name, times in (("one batched call (mixed adapters)", batched), ("three sequential calls", sequential)):
        times = sorted(times)
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"{name:36s} median {statistics.median(times):.3f} s  p90 {p90:.3f} s  max {times[-1]:.3f} s"
              f"  (n={len(times)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
