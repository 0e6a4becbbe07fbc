"""Decoupled vs baseline cost per training step, tokens per second and peak memory.

Both runs use the same base, data, seed and steps and differ only in lambda; each runs in
its own process so that its peak RSS is its own. Prints one line per run and the ratio of
decoupled to baseline seconds per step (the issue asks for at most 1.15).

    python bench/train_overhead.py            # 120 steps each on the default base
    python bench/train_overhead.py --quick    # 25 steps each, under a minute or two
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def child(method: str, steps: int, base: str, source: str, dialects: str, batch_size: int) -> None:
    import torch

    from backend import varieties
    from backend.runs import RunConfig
    from backend.training import train

    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = RunConfig(method=method, source=source, dialects=varieties.parse_list(dialects), base=base,
                       steps=steps, batch_size=batch_size, save_every=10**6, name="bench")
    start = time.time()
    run = train(config)
    total = time.time() - start
    records = run.metrics()
    walls = [r["wall_time"] for r in records]
    step_times = [b - a for a, b in zip(walls, walls[1:])][3:]  # skip warm-up steps
    out = {
        "method": method, "run": run.id, "steps": len(records), "total_s": round(total, 2),
        "mean_step_s": statistics.mean(step_times), "median_step_s": statistics.median(step_times),
        "tokens_per_s": records[-1]["tokens"] / records[-1]["wall_time"],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--base", default="default")
    ap.add_argument("--source", default="offline")
    ap.add_argument("--dialects", default="CAI,KHA,BEI,AMM,RIY,BAG,SAN,RAB,TUN")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    steps = args.steps or (25 if args.quick else 120)
    if args.child:
        child(args.child, steps, args.base, args.source, args.dialects, args.batch_size)
        return
    from backend import paths

    # The runs go to a scratch models folder (sharing the real base models), so the app never
    # lists the benchmark's adapters as a run pair.
    scratch = Path(tempfile.mkdtemp(prefix="dd-bench-"))
    (scratch / "base").symlink_to(paths.base_models_dir().resolve(), target_is_directory=True)
    env = {**os.environ, "DD_MODELS_DIR": str(scratch)}
    results = {}
    for method in ("baseline", "decoupled"):
        cmd = [sys.executable, __file__, "--child", method, "--steps", str(steps), "--base", args.base,
               "--source", args.source, "--dialects", args.dialects, "--batch-size", str(args.batch_size)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"{method} run failed:\n{proc.stderr[-2000:]}")
        results[method] = json.loads(line[len("RESULT "):])
        r = results[method]
        print(f"{method:9s} {r['steps']} steps  mean {r['mean_step_s'] * 1000:.0f} ms/step  "
              f"median {r['median_step_s'] * 1000:.0f} ms/step  {r['tokens_per_s']:.0f} target tokens/s  "
              f"peak RSS {r['peak_rss_gib']:.2f} GiB  ({r['device']}, run {r['run']})")
    b, d = results["baseline"], results["decoupled"]
    print(f"decoupled / baseline time per step: mean {d['mean_step_s'] / b['mean_step_s']:.3f}, "
          f"median {d['median_step_s'] / b['median_step_s']:.3f}")


if __name__ == "__main__":
    main()
