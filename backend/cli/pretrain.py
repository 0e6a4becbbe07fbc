"""`python -m backend pretrain`: build a base model from scratch under models/base/<name>/."""

from __future__ import annotations

import argparse
import json
import sys


def register(parser: argparse.ArgumentParser) -> None:
    from backend.pretrain import PRESETS  # lazy: torch, PRESETS lives in backend.pretrain

    parser.add_argument("--name", default="default", help="folder name under models/base (default: default)")
    parser.add_argument("--preset", default="small", choices=list(PRESETS),
                        help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()))
    parser.add_argument("--source", default="offline",
                        help="corpus to draw the text mixture from (default: offline; the dial2msa preset "
                             "reads ../shared/data/dial2msa unless another source is given)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from backend.pretrain import pretrain_base  # lazy: torch, keeps the CLI light

    def on_progress(event: dict) -> None:
        if event.get("stage") != "train" and event.get("message"):
            print(f"[{event['stage']}] {event['message']}", file=sys.stderr, flush=True)
        elif not sys.stderr.isatty() and event.get("step"):  # no progress bar in a log file: a line per 10%
            step, steps = event["step"], event.get("steps") or 0
            if steps and step % max(1, steps // 10) == 0:
                loss = event.get("loss")
                print(f"[train] step {step}/{steps}" + (f" loss {loss:.3f}" if loss is not None else "")
                      + f" ({event.get('elapsed', 0):.0f} s)", file=sys.stderr, flush=True)

    command = " ".join(["python -m backend pretrain", *sys.argv[2:]]) if sys.argv[1:2] == ["pretrain"] else None
    path = pretrain_base(name=args.name, source=args.source, preset=args.preset, steps=args.steps,
                         seed=args.seed, on_progress=on_progress, command=command)
    info = json.loads((path / "pretrain.json").read_text(encoding="utf-8"))
    dev = info["dev"]
    print(f"saved {path}")
    print(f"params {info['params']:,}  steps {info['steps']}  tokens seen {info['tokens_seen']:,}  "
          f"final loss {info['final_loss']}  wall time {info['wall_time_s']} s on {info['device']}")
    shares = ", ".join(f"{k} {v['share_chars']:.0%}" for k, v in info["mixture"]["components"].items())
    print(f"mixture (share of characters): {shares}; dialect text {info['mixture']['dialect_share_chars']:.1%}")
    if dev.get("texts"):
        print(f"{dev['split']} perplexity {dev['perplexity']} (MSA {dev['perplexity_msa']}, "
              f"dialects {dev['perplexity_dialect']}), {dev['bits_per_char']} bits/char on {dev['texts']} sentences")
    return 0
