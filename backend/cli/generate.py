"""`python -m backend generate`: translate a sentence into a variety with a base and an adapter.

    python -m backend generate --base default --adapter RUN_ID --target CAI --text "..."

`--adapter` takes a run id, a run folder or an adapter folder; with a run, its base model and
prompt format are used unless `--base` is given. `--text` may be repeated; one output line
per text, in order.

`--steer project|vector --strength S --layers L1,L2` steers the generation at inference time
(backend/steering.py); strength 0 gives exactly the unsteered output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backend import safety, varieties
from backend.errors import RunError
from backend.prompts import DEFAULT_FORMAT, Prompter
from backend.runs import Run, get_run


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", default=None, help="'default', a name under models/base, a folder or a hub id "
                                                 "(default: the run's base, else 'default')")
    p.add_argument("--adapter", default=None, help="run id, run folder or adapter folder (default: base alone)")
    p.add_argument("--target", required=True, help="target variety: code or name (CAI, Cairo, MSA, ...)")
    p.add_argument("--source-variety", default="MSA", help="variety of the input text (default: MSA)")
    p.add_argument("--text", action="append", required=True, help="input sentence; repeat for several")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--beams", type=int, default=1, help="beam search width (default: 1, greedy)")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy/beam decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    steer = p.add_argument_group("inference-time steering (backend/steering.py)")
    steer.add_argument("--steer", choices=["project", "vector"], default=None,
                       help="project: shrink the MSA-subspace component at --layers; vector: add the "
                            "dialect-minus-MSA mean difference")
    steer.add_argument("--strength", type=float, default=1.0, help="project: 0..1; vector: 0..4 (default: 1)")
    steer.add_argument("--layers", default=None, help="hidden-state layers, e.g. 3,4 (default: the run's probe "
                                                      "layers, else the default layers)")
    steer.add_argument("--subspace", choices=["auto", "run", "estimate"], default="auto",
                       help="project: the run's saved subspace (auto with a run) or one estimated on the model")
    steer.add_argument("--corpus", default=None, help="corpus whose train split the statistics are estimated "
                                                      "from (default: the run's, else offline)")


def resolve_adapter(spec: str) -> tuple[Path, dict | None]:
    """(adapter folder, run config dict or None) for a run id, a run folder or an adapter folder."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "adapter_config.json").is_file():
        run_dir = path.parent if (path.parent / "config.json").is_file() else None
    elif path.is_dir() and (path / "config.json").is_file():
        run_dir = path
    else:
        run_dir = get_run(spec).dir
    if run_dir is None:
        return path, None
    run = Run(run_dir)
    if path != run_dir and (path / "adapter_config.json").is_file():
        adapter = path
    elif run.has_adapter():
        adapter = run.adapter_dir
    else:
        raise RunError(f"run {run.id} has no adapter yet (state: {run.state().get('state')})")
    try:
        config = json.loads(run.config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        config = None
    return adapter, config


def main(args: argparse.Namespace) -> int:
    from backend.modeling import generate, load_adapter, load_base  # lazy: torch, keeps the CLI light

    target = varieties.code(args.target)
    source_variety = varieties.code(args.source_variety)
    texts = [safety.check_text(t, "--text") for t in args.text]  # the same caps as the Compare page
    adapter, run_config = resolve_adapter(args.adapter) if args.adapter else (None, None)
    base = args.base or (run_config or {}).get("base") or "default"
    template = (run_config or {}).get("prompt_format") or DEFAULT_FORMAT
    model, tokenizer = load_base(base)
    if adapter is not None:
        model = load_adapter(model, adapter, "adapter")
    prompter = Prompter(tokenizer, template)
    prompts = [prompter(t, source_variety, target) for t in texts]
    gen = dict(max_new_tokens=args.max_new_tokens, num_beams=args.beams, do_sample=args.sample,
               temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    if args.steer:
        from backend import steering  # lazy: torch, keeps the CLI light

        spec = steering.SteerSpec(args.steer, args.strength, steering.parse_layers(args.layers))
        run = Run(adapter.parent) if adapter is not None and run_config is not None else None
        steerer = steering.prepare(model, tokenizer, spec, base=base, run=run, adapter_dir=adapter,
                                   corpus_spec=args.corpus or (run_config or {}).get("source") or "offline",
                                   prompt_format=template, subspace=args.subspace,
                                   progress=lambda m: print(m, file=sys.stderr))
        print(f"steering: {steerer.spec.label}; {steerer.data.origin}", file=sys.stderr)
        outputs = steerer.generate(model, tokenizer, prompts, [target] * len(prompts), **gen)
    else:
        outputs = generate(model, tokenizer, prompts, **gen)
    for line in outputs:
        print(line)
    return 0
