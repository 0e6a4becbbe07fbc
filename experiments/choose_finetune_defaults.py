"""How the fine-tuning defaults (RunConfig) were chosen: baseline runs scored on the DEV split.

Each candidate trains one baseline adapter (lambda = 0) on the default base over every
dialect of the offline corpus, then scores it on the dev split (never the test split, which
the experiments report). Prints one markdown table row per candidate; a finished run with the
same settings (same run name) is reused, so the script can be stopped and re-run.

    python experiments/choose_finetune_defaults.py                 # every candidate
    python experiments/choose_finetune_defaults.py --only mlp-r16   # one of them
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ATTENTION_MLP = [*ATTENTION, "gate_proj", "up_proj", "down_proj"]
CANDIDATES = {
    "attn-r8": dict(lora_targets=ATTENTION, lora_rank=8, lora_alpha=16, learning_rate=2e-3, steps=300),
    "mlp-r8": dict(lora_targets=ATTENTION_MLP, lora_rank=8, lora_alpha=16, learning_rate=2e-3, steps=300),
    "mlp-r16": dict(lora_targets=ATTENTION_MLP, lora_rank=16, lora_alpha=32, learning_rate=2e-3, steps=300),
    "mlp-r16-lr4e-3": dict(lora_targets=ATTENTION_MLP, lora_rank=16, lora_alpha=32, learning_rate=4e-3, steps=300),
    "mlp-r16-1000": dict(lora_targets=ATTENTION_MLP, lora_rank=16, lora_alpha=32, learning_rate=2e-3, steps=1000),
    "mlp-r32-1000": dict(lora_targets=ATTENTION_MLP, lora_rank=32, lora_alpha=64, learning_rate=2e-3, steps=1000),
}


def main() -> int:
    from backend.data.offline import DIALECTS
    from backend.evaluation.evaluate import evaluate_run
    from backend.runs import RunConfig, list_runs
    from backend.training import train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=list(CANDIDATES))
    ap.add_argument("--max-sentences", type=int, default=100, help="dev sentences per variety")
    args = ap.parse_args()
    print("| candidate | targets | rank | lr | steps | train s | dev chrF++ (avg, 25 cities) | dev MSA chrF++ |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.only or CANDIDATES:
        settings = CANDIDATES[name]
        config = RunConfig(method="baseline", source="offline", dialects=list(DIALECTS), base="default",
                           batch_size=16, name=f"defaults-{name}", **settings)
        done = [r for r in list_runs() if r.config_path.is_file() and r.config().name == config.name
                and r.has_adapter() and r.state().get("state") == "finished"]
        start = time.time()
        run = done[0] if done else train(config)
        seconds = time.time() - start
        report = evaluate_run(run, split="dev", max_sentences=args.max_sentences, batch_size=32)
        targets = "attention + MLP" if "gate_proj" in settings["lora_targets"] else "attention"
        print(f"| {name} | {targets} | {settings['lora_rank']} | {settings['learning_rate']:g} | {settings['steps']} "
              f"| {seconds:.0f}{' (reused)' if done else ''} | {report['average']['chrf']:.2f} "
              f"| {report['msa']['chrf']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
