"""The paper's comparison in one command: `python -m backend experiment --config FILE`.

    base model (pretrained here if missing)
      -> per seed: baseline adapter (lambda = 0) and decoupled adapter, same data, seed and steps
      -> evaluation of both on the held-out split (chrF++, BLEU, fidelity, MSA leakage)
      -> paired bootstrap comparison, entanglement of base / baseline / decoupled
      -> models/experiments/<id>/results.json, results.md, figures/*.html

With several `seeds`, every seed trains, evaluates and compares its own baseline and
decoupled run (RunConfig.seed = that seed; the base model is the same), and the tables
report, per variety, chrF++ as mean ± sd over seeds, the delta as its mean with the per-seed
deltas beside it, and a paired bootstrap p-value stratified over seeds (for the average over
dialects, stratified over dialects and seeds); BLEU, fidelity, MSA leakage and entanglement
are means over seeds (the entanglement's 2-D projection is the first seed's). results.json
then holds `seeds`, `runs_by_seed` and `per_seed` (each seed's own table); its `runs` are the
first seed's pair. One seed gives exactly the single-run tables.

The experiment id is the config's `name`. The stages are the functions of `backend.stages`,
each cached on disk under `stages/`, keyed by a hash of everything that stage depends on, so
re-running the command skips what is finished, resumes a half-trained run from its last
checkpoint, and redoes only what a changed config invalidates (adding a seed trains only
that seed's runs). Progress is reported as `backend.events.Event`s (to `subscribers`, and
kept in events.jsonl beside log.txt). A `sweep` (over a corpus option such as
`msa_overlap` or madar's `cities`, written in the corpus spec's own syntax by
`Spec.with_options`, or over any run setting such as `lam`) repeats the pipeline per value
(and per seed) and adds one table per setting plus a summary; settings that coincide share
their runs. A list of sweeps varies one setting at a time around the main one. A sweep over
a setting that only the penalty uses (`runs.PAIR_FREE_SETTINGS`: lam, layers, probe
cadence...) retrains the decoupled run alone: the baseline, which has no penalty, is the
main setting's (of the same seed), and the two open as a pair on Compare. Runs are shared
by settings, not by name, so another experiment's run with the same settings and seed is
reused rather than retrained.

Config (YAML or JSON; every key but `name` optional):

    name: offline
    source: offline                  # corpus spec; "{shared}" expands to ../shared/data
    dialects: [CAI, KHA, ...]
    base: default                    # or {name, preset, steps, source, seed}
    train: {steps: 300, ...}         # RunConfig settings shared by both runs
    decoupled: {lam: 1.0}            # settings for the decoupled run only
    evaluation: {split: test, max_sentences: 200, batch_size: 16, max_new_tokens: 48}
    entanglement: {enabled: true, max_pairs: 32, layers: null, k: 8, probe_steps: 300}
    sweep: {param: msa_overlap, values: [0.2, 0.5, 0.8]}   # or a list of such
    seed: 0                          # one seed; or `seeds: [0, 1, 2]` (not both)
    arms: [baseline, decoupled, base+vector, baseline+project]   # optional: backend/arms.py
    steering: {project: {strength: 1.0}, vector: {strength: 1.0, layers: [3]}}
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import sacrebleu
import torch
import transformers
import yaml

from backend import paths, varieties
from backend.arms import arms_markdown, parse_arms, run_arms
from backend.data.sources import Spec
from backend.errors import UserError
from backend.evaluation import report
from backend.events import Event, Subscriber
from backend.runs import (
    DEFAULT_DIALECTS,
    PAIR_FREE_SETTINGS,
    Run,
    RunConfig,
    write_json_atomic,
    write_text_atomic,
)
from backend.stages import (
    Cancelled,
    Context,
    Interrupted,
    Progress,
    _fmt,
    compare_stage,
    ensure_base,
    entanglement_stage,
    eval_stage,
    expand_source,
    pretrain_info,
    seeds_stage,
    train_stage,
)

_RUN_FIELDS = {f.name for f in fields(RunConfig)}


# --- configuration ----------------------------------------------------------------------

@dataclass
class BaseSpec:
    """Which base model; pretrained with `preset` into models/base/<name> when missing."""

    name: str = "default"
    preset: str = "small"
    steps: int | None = None
    source: str = "offline"
    seed: int = 0


@dataclass
class EvalSpec:
    split: str = "test"
    max_sentences: int | None = None  # per variety
    batch_size: int = 16
    max_new_tokens: int = 48
    num_beams: int = 1
    bootstrap: int = 1000


@dataclass
class EntanglementSpec:
    enabled: bool = True
    max_pairs: int = 32  # per dialect
    layers: list[int] | None = None
    k: int = 8
    probe_steps: int = 300
    split: str | None = None  # default: the evaluation split


@dataclass
class ExperimentConfig:
    name: str
    source: str = "offline"
    dialects: list[str] = field(default_factory=lambda: list(DEFAULT_DIALECTS))
    base: BaseSpec = field(default_factory=BaseSpec)
    train: dict[str, Any] = field(default_factory=dict)
    decoupled: dict[str, Any] = field(default_factory=dict)
    evaluation: EvalSpec = field(default_factory=EvalSpec)
    entanglement: EntanglementSpec = field(default_factory=EntanglementSpec)
    sweep: list[dict[str, Any]] | None = None
    seed: int = 0
    seeds: list[int] | None = None  # several seeds; `seed` is the one-seed case
    description: str = ""
    arms: list[Any] | None = None  # systems with or without inference-time steering (backend/arms.py)
    steering: dict[str, Any] = field(default_factory=dict)  # the arms' steering defaults

    @property
    def id(self) -> str:
        return experiment_id(self.name)

    @property
    def seed_list(self) -> list[int]:
        """The seeds to run: `seeds`, or `[seed]`."""
        return _seeds(self.seeds) if self.seeds is not None else [int(self.seed)]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # Only the key that was meant, so that the dict parses back (seed and seeds conflict).
        if self.seeds is None:
            del out["seeds"]
        else:
            del out["seed"]
        return out


def experiment_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.")[:60]
    if not slug:
        raise UserError("an experiment config needs a `name` (letters, digits, '-', '_')")
    return slug


def _section(cls, data: Any, where: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise UserError(f"`{where}` must be a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"unknown keys in `{where}`: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**data)


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    if not isinstance(data, dict):
        raise UserError("an experiment config must be a mapping")
    data = dict(data)
    known = {f.name for f in fields(ExperimentConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"unknown experiment settings: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if "name" not in data:
        raise UserError("an experiment config needs a `name`")
    base = data.get("base")
    data["base"] = BaseSpec(name=base) if isinstance(base, str) else _section(BaseSpec, base, "base")
    data["evaluation"] = _section(EvalSpec, data.get("evaluation"), "evaluation")
    data["entanglement"] = _section(EntanglementSpec, data.get("entanglement"), "entanglement")
    for key in ("train", "decoupled"):
        section = data.get(key) or {}
        if not isinstance(section, dict):
            raise UserError(f"`{key}` must be a mapping of run settings")
        bad = sorted(set(section) - _RUN_FIELDS)
        fixed = sorted(set(section) & {"method", "source", "dialects", "base", "seed", "name"})
        if bad or fixed:
            raise UserError(f"`{key}` cannot set {', '.join(bad + fixed)}; run settings are: "
                            f"{', '.join(sorted(_RUN_FIELDS - {'method', 'source', 'dialects', 'base', 'seed', 'name'}))}")
        try:
            RunConfig(**section)  # each setting checked once, where RunConfig declares it
        except UserError as e:
            raise UserError(f"`{key}`: {e}") from None
        data[key] = dict(section)
    data["dialects"] = varieties.parse_list(data.get("dialects") or DEFAULT_DIALECTS)
    if "seed" in data and "seeds" in data and data["seeds"] is not None:
        raise UserError("give either `seed` (one seed) or `seeds` (a list), not both")
    if data.get("seeds") is not None:
        data["seeds"] = _seeds(data["seeds"])
    if not isinstance(data.get("seed", 0), int) or isinstance(data.get("seed", 0), bool):
        raise UserError(f"`seed` must be an integer, not {data['seed']!r}")
    config = ExperimentConfig(**data)
    if config.evaluation.split not in ("train", "dev", "test"):
        raise UserError(f"evaluation split must be dev or test, not {config.evaluation.split!r}")
    if config.evaluation.split == "train":
        raise UserError("evaluating on the training split says nothing; use dev or test")
    if config.arms is not None:
        parse_arms(config.arms, config.steering)
    if config.sweep is not None:
        config.sweep = _sweeps(config.sweep)
    experiment_id(config.name)
    return config


def _seeds(seeds: Any) -> list[int]:
    """A non-empty list of distinct integers."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds \
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise UserError(f"`seeds` must be a non-empty list of integers, not {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"`seeds` lists a seed twice: {seeds}")
    return list(seeds)


def _sweeps(sweep: Any) -> list[dict[str, Any]]:
    """`{param, values}` or a list of them, checked."""
    items = sweep if isinstance(sweep, list) else [sweep]
    out = []
    for item in items:
        if not isinstance(item, dict) or "param" not in item or not isinstance(item.get("values"), list) \
                or not item["values"]:
            raise UserError("`sweep` needs `param` and a non-empty list of `values` (or a list of such)")
        if item["param"] in {"method", "dialects", "base", "name", "seed", "source"}:
            raise UserError(f"cannot sweep over {item['param']!r}")
        for value in item["values"] if item["param"] in _RUN_FIELDS else ():
            try:
                RunConfig(**{item["param"]: value})
            except UserError as e:
                raise UserError(f"`sweep` over {item['param']}: {e}") from None
        out.append({"param": str(item["param"]), "values": list(item["values"])})
    return out


def sweep_params(config: ExperimentConfig) -> list[str]:
    return list(dict.fromkeys(k for s in settings(config)[1] for k in s.values))


def load_config(path: str | Path) -> ExperimentConfig:
    """An experiment config from a .yaml/.yml or .json file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no experiment config at {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml and json raise their own error types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot parse {path}: {first}") from None
    return config_from_dict(data)


@dataclass
class Setting:
    """One point of the experiment: a label, its corpus, and its run settings."""

    label: str
    values: dict[str, Any]
    source: str
    train: dict[str, Any]
    decoupled: dict[str, Any]


def settings(config: ExperimentConfig) -> tuple[Setting, list[Setting]]:
    """The main setting and the sweep's settings (empty without a sweep)."""
    main = Setting("main", {}, expand_source(config.source), dict(config.train), dict(config.decoupled))
    out = []
    # _sweeps again: a config built in code may set `sweep` to a single {param, values}.
    for sweep in _sweeps(config.sweep) if config.sweep else []:
        param = sweep["param"]
        for value in sweep["values"]:
            s = Setting(f"{param}={value}", {param: value}, main.source, dict(main.train), dict(main.decoupled))
            if param in PAIR_FREE_SETTINGS:  # the penalty's: the baseline stays the main one
                s.decoupled[param] = value
            elif param in _RUN_FIELDS:
                s.train[param] = value
            else:  # a corpus option, written into the spec by its own syntax
                s.source = str(Spec.parse(main.source).with_options(**{param: value}))
            out.append(s)
    return main, out


# --- the pipeline: the stages chained per setting and seed --------------------------------

def run_config(config: ExperimentConfig, setting: Setting, method: str, base: str,
               seed: int | None = None) -> RunConfig:
    """The RunConfig one method of one setting trains with (for one seed)."""
    seed = config.seed_list[0] if seed is None else seed
    values = {**setting.train, **(setting.decoupled if method == "decoupled" else {})}
    name = f"{config.id}-{setting.label}" if setting.label != "main" else config.id
    if len(config.seed_list) > 1:
        name = f"{name}-seed{seed}"
    return RunConfig(method=method, source=setting.source, dialects=list(config.dialects), base=base,
                     seed=seed, name=name, **values)


def run_seed(ctx: Context, setting: Setting, base: str, base_fp: str, seed: int) -> dict:
    """One seed of one setting: both runs trained, evaluated, compared, measured."""
    runs = {m: train_stage(ctx, run_config(ctx.config, setting, m, base, seed), base_fp)
            for m in ("baseline", "decoupled")}
    evals = (eval_stage(ctx, runs["baseline"], setting.source, seed),
             eval_stage(ctx, runs["decoupled"], setting.source, seed))
    table = compare_stage(ctx, runs["baseline"], runs["decoupled"], evals)
    ent = entanglement_stage(ctx, base, base_fp, runs["baseline"], runs["decoupled"], setting.source, seed)
    return {"setting": setting.values, "label": setting.label, "source": setting.source, **table,
            "entanglement": ent, "training": {m: _training_series(r) for m, r in runs.items()},
            "generation": {m: e["generation"] for m, e in zip(("baseline", "decoupled"), evals)}}


def run_setting(ctx: Context, setting: Setting, base: str, base_fp: str) -> dict:
    ctx.say(f"setting {setting.label}: corpus {setting.source}")
    seeds = ctx.config.seed_list
    per_seed = []
    for seed in seeds:
        if len(seeds) > 1:
            ctx.say(f"setting {setting.label}: seed {seed}")
        per_seed.append(run_seed(ctx, setting, base, base_fp, seed))
    if len(per_seed) == 1:
        return {**per_seed[0], "seeds": seeds}
    table = seeds_stage(ctx, per_seed, seeds)
    first = per_seed[0]
    return {"setting": setting.values, "label": setting.label, "source": setting.source, **table,
            "entanglement": mean_entanglement([r["entanglement"] for r in per_seed], seeds),
            "training": first["training"], "generation": first["generation"],
            "per_seed": [{**t, "entanglement": _entanglement_means(r["entanglement"]),
                          "training": r["training"], "generation": r["generation"]}
                         for t, r in zip(table["per_seed"], per_seed)]}

def hardware() -> dict[str, Any]:
    info = {"platform": platform.platform(), "machine": platform.machine(), "processor": _cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "sacrebleu": sacrebleu.__version__,
            "device": "cuda" if torch.cuda.is_available() else "cpu"}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Experiment:
    """One config's pipeline: the stage functions of `backend.stages` chained per setting and
    seed, then results.json, results.md and the figures. `run()` returns results.json's
    content. Progress goes to `progress` (text lines) and to `subscribers` (`Event`s, also
    kept in events.jsonl)."""

    def __init__(self, config: ExperimentConfig, progress: Progress | None = None, fresh: bool = False,
                 root: Path | None = None, command: str | None = None,
                 subscribers: Iterable[Subscriber] = ()) -> None:
        self.config = config
        self.dir = (root or paths.experiments_dir()) / config.id
        self.ctx = Context(config, self.dir, fresh=fresh, progress=progress, subscribers=subscribers)
        self.command = command

    def run_config(self, setting: Setting, method: str, base: str, seed: int | None = None) -> RunConfig:
        return run_config(self.config, setting, method, base, seed)

    def run(self) -> dict:
        ctx = self.ctx
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.dir / "config.json", self.config.to_dict())
        ctx.write_state(state="running", stage="start", message="starting")
        ctx.emit(Event("start", message="starting"))
        try:
            base, base_fp = ensure_base(ctx)
            main, sweep_settings = settings(self.config)
            main_result = run_setting(ctx, main, base, base_fp)
            arms = run_arms(ctx, main_result, base, base_fp, main.source) if self.config.arms else None
            sweep = [{**main_result, "setting": s.values, "label": s.label}
                     if (s.source, s.train, s.decoupled) == (main.source, main.train, main.decoupled)
                     else run_setting(ctx, s, base, base_fp) for s in sweep_settings]
            ctx.say("writing results and figures", "report")
            results = self._results(main_result, sweep, base)
            results["figures"] = self._figures(main_result, sweep)
            if arms:
                results["arms"] = arms
            write_json_atomic(self.dir / "results.json", results)
            write_text_atomic(self.dir / "results.md", results_markdown(results))
            ctx.write_state(state="finished", stage="done", message=f"results in {self.dir}")
            ctx.say(f"done: {self.dir / 'results.md'}")
            ctx.emit(Event("done", state="finished", message="results written"))
            return results
        except BaseException as e:
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            ctx.write_state(state="failed", stage="failed", message=message)
            stopped = isinstance(e, (Cancelled, Interrupted, KeyboardInterrupt))
            ctx.emit(Event(ctx.stage, state="cancelled" if stopped else "failed", message=message))
            raise

    def _results(self, main: dict, sweep: list[dict], base: str) -> dict:
        keep = ("setting", "label", "source", "runs", "rows", "average", "msa", "signatures", "identifier_accuracy",
                "bootstrap")
        seeds = self.config.seed_list
        results = {
            "id": self.config.id, "name": self.config.name, "config": self.config.to_dict(),
            "command": self.command or f"python -m backend experiment --config experiments/{self.config.id}.yaml",
            "hardware": hardware(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "wall_time_s": round(time.time() - self.ctx.started, 1),
            "base": base, "base_info": _pretrain_summary(base), "split": main["split"],
            "signatures": main["signatures"], "identifier_accuracy": main["identifier_accuracy"],
            "bootstrap": main["bootstrap"],
            "identifier": main["identifier"],
            "rows": main["rows"], "average": main["average"], "msa": main["msa"], "runs": main["runs"],
            "entanglement": main["entanglement"] or {}, "training": main["training"],
            "generation": main["generation"], "seeds": seeds,
        }
        if len(seeds) > 1:
            results["runs_by_seed"] = main["runs_by_seed"]
            results["per_seed"] = main["per_seed"]
        if self.config.sweep:
            results["sweep"] = [{**{k: s[k] for k in keep}, "entanglement": _entanglement_means(s["entanglement"]),
                                 **({"seeds": seeds, "runs_by_seed": s["runs_by_seed"],
                                     "per_seed": [{k: p[k] for k in ("seed", "runs", "average", "msa", "entanglement")}
                                                  for p in s["per_seed"]]} if len(seeds) > 1 else {})}
                                for s in sweep]
            results["sweep_param"] = ", ".join(sweep_params(self.config))
        return results

    def _figures(self, main: dict, sweep: list[dict]) -> dict[str, str]:
        fig_dir = self.dir / "figures"
        out = {}

        def put(name: str, fig) -> None:
            report.write_figure(fig, fig_dir / f"{name}.html")
            out[name] = f"figures/{name}.html"

        put("chrf", report.dialect_bars(main, "chrF++ per dialect: baseline vs decoupled"))
        put("overlap", report.overlap_figure(main["training"] if not main.get("per_seed") else {
            f"{m} (seed {p['seed']})": series for p in main["per_seed"] for m, series in p["training"].items()}))
        if main["entanglement"]:
            put("entanglement", report.entanglement_figure(main["entanglement"]))
            put("projection", report.projection_figure(main["entanglement"]))
        if sweep:
            put("sweep", report.sweep_figure(sweep))
            for s in sweep:
                slug = re.sub(r"[^A-Za-z0-9_.=-]+", "-", s["label"])
                put(f"chrf_{slug}", report.dialect_bars(s, f"chrF++ per dialect, {s['label']}"))
        return out


def results_markdown(results: dict) -> str:
    hw = results["hardware"]
    device = hw.get("gpu") or f"{hw.get('processor')} ({hw.get('cpu_count')} cores, {hw.get('torch_threads')} threads)"
    acc = results.get("identifier_accuracy")
    lines = [
        f"# Experiment {results['id']}", "",
        f"Command: `{results['command']}`  ",
        f"Hardware: {device}, {hw.get('platform')}; torch {hw.get('torch')}, transformers {hw.get('transformers')}  ",
        f"Created {results['created']}, wall time {results['wall_time_s']} s; base model `{results['base']}`; "
        f"evaluated on the {results['split']} split.  ",
        *_runs_lines(results), "",
        f"chrF++ signature: `{results['signatures']['chrf']}`  ",
        f"BLEU signature: `{results['signatures']['bleu']}`  ",
        f"Dialect identifier (char 1-5-gram naive Bayes, trained on the train split): accuracy "
        f"{_fmt(acc and 100 * acc, 1)}% on the {results['split']} references "
        f"(chance {_fmt(100 * (results['identifier'].get('chance') or 0), 1)}%).", "",
        report.comparison_markdown(results, "Main setting"), "",
    ]
    ent = report.entanglement_markdown(results.get("entanglement") or {})
    if ent:
        lines += [ent, ""]
    if results.get("arms"):
        lines += [arms_markdown(results["arms"]), ""]
    if results.get("sweep"):
        lines += [f"## Sweep over {results.get('sweep_param')}", "", report.sweep_markdown(results["sweep"]), ""]
        for s in results["sweep"]:
            lines += [report.comparison_markdown(s, s["label"]), ""]
    return "\n".join(lines)


def _runs_lines(results: dict) -> list[str]:
    by_seed = results.get("runs_by_seed") if len(results.get("seeds") or []) > 1 else None
    if not by_seed:
        return [f"Runs: baseline `{results['runs']['baseline']}`, decoupled `{results['runs']['decoupled']}`."]
    return [f"Seeds: {', '.join(str(r['seed']) for r in by_seed)} (each seed trains its own baseline and "
            "decoupled run; tables give mean ± sd over seeds).  ",
            "Runs: " + "; ".join(f"seed {r['seed']}: baseline `{r['baseline']}`, decoupled `{r['decoupled']}`"
                                 for r in by_seed) + "."]


def _entanglement_means(ent: dict | None) -> dict | None:
    """System -> its means over layers (the sweep summary's and the per-seed entanglement)."""
    return (ent or {}).get("systems") and {name: v["mean"] for name, v in ent["systems"].items()}


def _mean_tree(values: list[Any]) -> Any:
    """Elementwise mean of equally shaped JSON values (numbers, lists, dicts); the first
    value where the shapes differ or the values are not numbers."""
    first = values[0]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        nums = [float(v) for v in values if v == v]  # NaN != NaN
        return sum(nums) / len(nums) if nums else None
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return _mean_tree([v for v in values if v is not None]) if any(v is not None for v in values) else None
    if isinstance(first, dict) and all(isinstance(v, dict) and v.keys() == first.keys() for v in values):
        return {k: _mean_tree([v[k] for v in values]) for k in first}
    if isinstance(first, list) and all(isinstance(v, list) and len(v) == len(first) for v in values):
        return [_mean_tree([v[i] for v in values]) for i in range(len(first))]
    return first


def mean_entanglement(reports: list[dict | None], seeds: list[int]) -> dict | None:
    """Entanglement over seeds: every system's per-layer figures and means over layers
    averaged over the seeds' reports; the 2-D projection is the first seed's."""
    pairs = [(s, r) for s, r in zip(seeds, reports) if r and r.get("systems")]
    if not pairs:
        return None
    first = pairs[0][1]
    systems = {name: _mean_tree([r["systems"][name] for _, r in pairs]) for name in first["systems"]
               if all(name in r["systems"] for _, r in pairs)}
    return {**first, "systems": systems, "seeds": [s for s, _ in pairs], "projection_seed": pairs[0][0],
            "per_seed": [{"seed": s, "systems": _entanglement_means(r)} for s, r in pairs]}


def _pretrain_summary(base: str) -> dict:
    info = pretrain_info(paths.base_dir(base)) if "/" not in base else {}
    return {k: info.get(k) for k in ("name", "preset", "params", "steps", "final_loss", "created", "source")
            if k in info}


def _training_series(run: Run) -> list[dict]:
    """Per probe update: step, mean overlap over layers, LM loss, penalty (for the figures)."""
    out = []
    for r in run.metrics():
        overlap = r.get("overlap")
        if overlap:
            out.append({"step": r.get("step"), "overlap": sum(overlap.values()) / len(overlap),
                        "overlap_per_layer": overlap, "lm_loss": r.get("lm_loss"), "penalty": r.get("penalty")})
    return out


def run_experiment(config: ExperimentConfig | str | Path, progress: Progress | None = None, fresh: bool = False,
                   command: str | None = None, subscribers: Iterable[Subscriber] = ()) -> dict:
    """Run (or finish) an experiment and return its results.json content."""
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    return Experiment(config, progress=progress, fresh=fresh, command=command, subscribers=subscribers).run()
