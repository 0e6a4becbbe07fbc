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

The experiment id is the config's `name`. Every stage's result is cached on disk under
`stages/`, keyed by a hash of everything that stage depends on, so re-running the command
skips what is finished, resumes a half-trained run from its last checkpoint, and redoes
only what a changed config invalidates (adding a seed trains only that seed's runs). A
`sweep` (over a corpus option such as `msa_overlap`, or over any run setting such as `lam`)
repeats the pipeline per value (and per seed) and adds one table per setting plus a
summary; settings that coincide share their runs. A list of sweeps varies one setting at a
time around the main one. A sweep over a setting that only the penalty uses (lam, layers,
probe cadence...) retrains the decoupled run alone: the baseline, which has no penalty, is
the main setting's (of the same seed). Runs are shared by settings, not by name, so another
experiment's run with the same settings and seed is reused rather than retrained.

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

import hashlib
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from backend import paths, varieties
from backend.errors import RunError, UserError
from backend.runs import DEFAULT_DIALECTS, Run, RunConfig, create_run, write_json_atomic, write_text_atomic

Progress = Callable[[str], None]
_RUN_FIELDS = {f.name for f in fields(RunConfig)}
# Settings that change nothing in a run without the penalty (lambda = 0).
PENALTY_ONLY = {"lam", "lam_warmup", "layers", "probe_every", "probe_rank", "probe_steps", "probe_batch", "subspace"}


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
        from backend.arms import parse_arms

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
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml and json raise their own error types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot parse {path}: {first}") from None
    return config_from_dict(data)


def expand_source(spec: str) -> str:
    return str(spec).replace("{shared}", str(paths.shared_data_dir()))


def with_source_option(spec: str, key: str, value: Any) -> str:
    """`offline:seed=1` + (msa_overlap, 0.2) -> `offline:seed=1,msa_overlap=0.2`."""
    name, _, opts = spec.partition(":")
    if opts and not all("=" in part for part in opts.split(",") if part):
        raise UserError(f"cannot set {key} on corpus {spec!r}: it takes no options")
    items = dict(part.split("=", 1) for part in opts.split(",") if part)
    items[key] = str(value)
    return f"{name}:" + ",".join(f"{k}={v}" for k, v in items.items())


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
            if param in PENALTY_ONLY:
                s.decoupled[param] = value
            elif param in _RUN_FIELDS:
                s.train[param] = value
            else:
                s.source = with_source_option(main.source, param, value)
            out.append(s)
    return main, out


# --- the stage cache ----------------------------------------------------------------------

def _hash(key: Any) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageCache:
    """One JSON file per finished (or started) stage: stages/<kind>-<hash of its inputs>.json."""

    def __init__(self, root: Path) -> None:
        self.root = root / "stages"

    def path(self, kind: str, key: Any) -> Path:
        return self.root / f"{kind}-{_hash(key)}.json"

    def get(self, kind: str, key: Any) -> dict | None:
        try:
            return json.loads(self.path(kind, key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, kind: str, key: Any, record: dict) -> dict:
        write_json_atomic(self.path(kind, key), {"kind": kind, "key": key, "saved": time.time(), **record})
        return record


# --- the pipeline -------------------------------------------------------------------------

def hardware() -> dict[str, Any]:
    import sacrebleu
    import torch
    import transformers

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
    """Runs the stages of one config; `run()` returns results.json's content."""

    def __init__(self, config: ExperimentConfig, progress: Progress | None = None, fresh: bool = False,
                 root: Path | None = None, command: str | None = None) -> None:
        self.config = config
        self.dir = (root or paths.experiments_dir()) / config.id
        self.cache = StageCache(self.dir)
        self.fresh = fresh
        self.command = command
        self.started = time.time()
        self._progress = progress or (lambda message: print(message, file=sys.stderr, flush=True))
        self._corpora: dict[str, Any] = {}

    # progress and state -------------------------------------------------------------------
    def say(self, message: str, stage: str | None = None) -> None:
        elapsed = time.time() - self.started
        self._progress(f"[{self.config.id} {elapsed:6.0f}s] {message}")
        with open(self.dir / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        if stage:
            self._state(state="running", stage=stage, message=message)

    def _state(self, **values: Any) -> None:
        write_json_atomic(self.dir / "state.json", {**values, "pid": os.getpid(), "updated": time.time(),
                                                    "started": self.started})

    def _cached(self, kind: str, key: Any) -> dict | None:
        return None if self.fresh else self.cache.get(kind, key)

    def corpus(self, source: str):
        if source not in self._corpora:
            from backend.data import load_corpus

            self._corpora[source] = load_corpus(source)
        return self._corpora[source]

    # stages -------------------------------------------------------------------------------
    def ensure_base(self) -> tuple[str, str]:
        """(base to load, fingerprint). Pretrains models/base/<name> when it is missing."""
        from backend.modeling import is_hub_id

        spec = self.config.base
        folder = paths.base_dir(spec.name)
        if not folder.is_dir() and (Path(spec.name).expanduser().is_dir() or is_hub_id(spec.name)):
            return spec.name, spec.name  # a folder elsewhere or a hub model: used as it is
        if folder.is_dir():
            info = _pretrain_info(folder)
            preset = info.get("preset")
            if preset and spec.preset and preset != spec.preset:
                raise UserError(f"base model {spec.name!r} exists with preset {preset!r}, but the config asks for "
                                f"{spec.preset!r}; rename the base or delete {folder}")
            self.say(f"base model {spec.name}: found ({info.get('params', '?')} parameters)", "base")
            return spec.name, str(info.get("created", folder.stat().st_mtime))
        from backend.pretrain import pretrain_base

        self.say(f"base model {spec.name}: pretraining with preset {spec.preset}", "base")

        def on_progress(event: dict) -> None:
            if event.get("message"):
                self.say(f"  pretrain [{event.get('stage')}] {event['message']}")
            elif event.get("stage") == "train" and event.get("step"):
                total = event.get("steps") or 0
                if total and (event["step"] % max(1, total // 10) == 0):
                    self.say(f"  pretrain step {event['step']}/{total} loss {event.get('loss', float('nan')):.3f}")

        path = pretrain_base(name=spec.name, source=expand_source(spec.source), preset=spec.preset,
                             steps=spec.steps, seed=spec.seed, on_progress=on_progress)
        info = _pretrain_info(path)
        return spec.name, str(info.get("created"))

    def run_config(self, setting: Setting, method: str, base: str, seed: int | None = None) -> RunConfig:
        seed = self.config.seed_list[0] if seed is None else seed
        values = {**setting.train, **(setting.decoupled if method == "decoupled" else {})}
        name = f"{self.config.id}-{setting.label}" if setting.label != "main" else self.config.id
        if len(self.config.seed_list) > 1:
            name = f"{name}-seed{seed}"
        return RunConfig(method=method, source=setting.source, dialects=list(self.config.dialects), base=base,
                         seed=seed, name=name, **values)

    def train_stage(self, config: RunConfig, base_fp: str) -> Run:
        from backend.training import train

        # The name is left out so that settings that coincide (a baseline is the same in a
        # lambda sweep) share one run.
        key = {"run": {k: v for k, v in config.to_dict().items() if k != "name"}, "base": base_fp}
        record = self._cached("run", key) or self._shared_run(key)
        label = f"{config.method} ({config.name})"
        if record:
            run = Run(paths.runs_dir() / record["run"])
            if run.dir.is_dir():
                if run.has_adapter() and run.state().get("state") == "finished":
                    self.say(f"{label}: finished earlier as {run.id}")
                    return run
                resume = run.latest_checkpoint() is not None
                self.say(f"{label}: {'resuming' if resume else 'restarting'} {run.id}", "train")
                return self._train(train, config, run, resume)
        run = create_run(config)
        self.cache.put("run", key, {"run": run.id})
        self.say(f"{label}: training {run.id} ({config.steps} steps, lambda {config.lam})", "train")
        return self._train(train, config, run, False)

    def _shared_run(self, key: Any) -> dict | None:
        """A finished run with exactly these settings and base, trained by another
        experiment (a tuning sweep repeats the main setting): reused, not retrained."""
        if self.fresh:
            return None
        name = self.cache.path("run", key).name
        for other in sorted(self.dir.parent.glob(f"*/stages/{name}")):
            try:
                record = json.loads(other.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            run = Run(paths.runs_dir() / str(record.get("run")))
            if run.dir.is_dir() and run.has_adapter() and run.state().get("state") == "finished":
                self.say(f"reusing {run.id}, trained with the same settings by experiment {other.parent.parent.name}")
                return self.cache.put("run", key, {"run": run.id})
        return None

    def _train(self, train, config: RunConfig, run: Run, resume: bool) -> Run:
        every = max(1, config.steps // 10)

        def on_progress(p: dict) -> None:
            if p["step"] % every == 0 or p["step"] == p["steps"]:
                overlap = p.get("overlap")
                self.say(f"  {config.method} step {p['step']}/{p['steps']} loss {p['loss']:.3f} "
                         f"penalty {p['penalty']:.3f} overlap {'n/a' if overlap is None else f'{overlap:.3f}'} "
                         f"eta {p['eta_s']:.0f}s")

        run = train(config, run=run, resume=resume, on_progress=on_progress)
        state = run.state().get("state")
        if state != "finished":
            raise RunError(f"run {run.id} ended {state}; re-run the experiment to resume it")
        return run

    def eval_stage(self, run: Run, source: str, seed: int = 0) -> dict:
        from backend.evaluation.evaluate import evaluate_run

        ev = self.config.evaluation
        key = {"run": run.id, "adapter": _adapter_stamp(run),
               "eval": {k: v for k, v in asdict(ev).items() if k != "bootstrap"}}
        record = self._cached("eval", key)
        existing = run.eval()
        if existing and (run.dir / "outputs.jsonl").is_file() and not self.fresh and (
                (record and existing.get("created") == record.get("created")) or _evaluated_as(existing, ev, seed)):
            self.say(f"evaluation of {run.id}: done earlier")
            self.cache.put("eval", key, {"created": existing["created"]})
            return existing
        self.say(f"evaluating {run.id} on {ev.split}", "evaluate")
        report = evaluate_run(run, split=ev.split, max_sentences=ev.max_sentences, batch_size=ev.batch_size,
                              max_new_tokens=ev.max_new_tokens, num_beams=ev.num_beams, seed=seed,
                              corpus=self.corpus(source), progress=lambda m: self.say(f"  {m}"))
        self.cache.put("eval", key, {"created": report["created"]})
        self.say(f"  {run.id}: average chrF++ {_fmt(report['average'].get('chrf'))}, "
                 f"{report['generation']['sentences_per_s']} sentences/s")
        return report

    def compare_stage(self, baseline: Run, decoupled: Run, evals: tuple[dict, dict]) -> dict:
        from backend.evaluation.evaluate import compare_runs

        key = {"runs": [baseline.id, decoupled.id], "evals": [e["created"] for e in evals],
               "bootstrap": self.config.evaluation.bootstrap}
        record = self._cached("compare", key)
        if record:
            return record["result"]
        self.say("paired bootstrap: decoupled against baseline", "compare")
        table = compare_runs(baseline, decoupled, n_samples=self.config.evaluation.bootstrap)
        self.cache.put("compare", key, {"result": table})
        return table

    def entanglement_stage(self, base: str, base_fp: str, baseline: Run, decoupled: Run, source: str,
                           seed: int = 0) -> dict | None:
        from backend.evaluation.entanglement import entanglement_report

        spec = self.config.entanglement
        if not spec.enabled:
            return None
        split = spec.split or self.config.evaluation.split
        corpus = self.corpus(source)
        pairs = []
        for code in self.config.dialects:
            mine = [p for p in corpus.pairs if p.split == split and p.target_variety == code
                    and p.source_variety == "MSA" and p.source.strip() and p.target.strip()]
            pairs.extend(mine[: spec.max_pairs])
        if len(pairs) < 4:
            self.say(f"entanglement: skipped ({len(pairs)} MSA -> dialect pairs in {split})")
            return None
        key = {"base": base_fp, "runs": [baseline.id, decoupled.id], "adapters": [_adapter_stamp(baseline),
               _adapter_stamp(decoupled)], "spec": asdict(spec), "pairs": [p.id for p in pairs],
               "seed": seed}
        record = self._cached("entanglement", key)
        if record:
            return record["result"]
        self.say(f"entanglement on {len(pairs)} held-out pairs", "entanglement")
        config = baseline.config()
        layers = spec.layers or config.layers
        result = entanglement_report(base, {"baseline": baseline.adapter_dir, "decoupled": decoupled.adapter_dir},
                                     pairs, list(self.config.dialects), config.prompt_format, layers=layers,
                                     k=spec.k, max_length=config.max_length, probe_steps=spec.probe_steps,
                                     seed=seed, progress=lambda m: self.say(f"  {m}"))
        result["split"] = split
        self.cache.put("entanglement", key, {"result": result})
        return result

    def run_seed(self, setting: Setting, base: str, base_fp: str, seed: int) -> dict:
        """One seed of one setting: both runs trained, evaluated, compared, measured."""
        runs = {m: self.train_stage(self.run_config(setting, m, base, seed), base_fp)
                for m in ("baseline", "decoupled")}
        evals = (self.eval_stage(runs["baseline"], setting.source, seed),
                 self.eval_stage(runs["decoupled"], setting.source, seed))
        table = self.compare_stage(runs["baseline"], runs["decoupled"], evals)
        ent = self.entanglement_stage(base, base_fp, runs["baseline"], runs["decoupled"], setting.source, seed)
        return {"setting": setting.values, "label": setting.label, "source": setting.source, **table,
                "entanglement": ent, "training": {m: _training_series(r) for m, r in runs.items()},
                "generation": {m: e["generation"] for m, e in zip(("baseline", "decoupled"), evals)}}

    def run_setting(self, setting: Setting, base: str, base_fp: str) -> dict:
        self.say(f"setting {setting.label}: corpus {setting.source}")
        seeds = self.config.seed_list
        per_seed = []
        for seed in seeds:
            if len(seeds) > 1:
                self.say(f"setting {setting.label}: seed {seed}")
            per_seed.append(self.run_seed(setting, base, base_fp, seed))
        if len(per_seed) == 1:
            return {**per_seed[0], "seeds": seeds}
        table = self.seeds_stage(per_seed, seeds)
        first = per_seed[0]
        return {"setting": setting.values, "label": setting.label, "source": setting.source, **table,
                "entanglement": mean_entanglement([r["entanglement"] for r in per_seed], seeds),
                "training": first["training"], "generation": first["generation"],
                "per_seed": [{**t, "entanglement": _entanglement_means(r["entanglement"]),
                              "training": r["training"], "generation": r["generation"]}
                             for t, r in zip(table["per_seed"], per_seed)]}

    def seeds_stage(self, per_seed: list[dict], seeds: list[int]) -> dict:
        """The table over seeds (means, sd, per-seed deltas, bootstrap stratified over seeds)."""
        from backend.evaluation.evaluate import compare_seeds

        pairs = [(r["runs"]["baseline"], r["runs"]["decoupled"]) for r in per_seed]
        key = {"seeds": seeds, "pairs": pairs, "tables": [_hash({k: r[k] for k in ("rows", "average", "msa")})
                                                          for r in per_seed],
               "bootstrap": self.config.evaluation.bootstrap}
        record = self._cached("seeds", key)
        if record:
            return record["result"]
        self.say(f"paired bootstrap over seeds {', '.join(map(str, seeds))}", "compare")
        tables = [{k: v for k, v in r.items() if k not in ("setting", "label", "source", "entanglement", "training",
                                                           "generation")} for r in per_seed]
        table = compare_seeds(pairs, seeds, n_samples=self.config.evaluation.bootstrap, tables=tables)
        self.cache.put("seeds", key, {"result": table})
        return table

    def run(self) -> dict:
        from backend.evaluation import report

        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.dir / "config.json", self.config.to_dict())
        self._state(state="running", stage="start", message="starting")
        try:
            base, base_fp = self.ensure_base()
            main, sweep_settings = settings(self.config)
            main_result = self.run_setting(main, base, base_fp)
            arms = None
            if self.config.arms:
                from backend.arms import run_arms

                arms = run_arms(self, main_result, base, base_fp, main.source)
            sweep = [{**main_result, "setting": s.values, "label": s.label}
                     if (s.source, s.train, s.decoupled) == (main.source, main.train, main.decoupled)
                     else self.run_setting(s, base, base_fp) for s in sweep_settings]
            self.say("writing results and figures", "report")
            results = self._results(main_result, sweep, base)
            figures = self._figures(main_result, sweep, report)
            results["figures"] = figures
            if arms:
                results["arms"] = arms
            write_json_atomic(self.dir / "results.json", results)
            write_text_atomic(self.dir / "results.md", results_markdown(results))
            self._state(state="finished", stage="done", message=f"results in {self.dir}")
            self.say(f"done: {self.dir / 'results.md'}")
            return results
        except BaseException as e:
            self._state(state="failed", stage="failed", message=str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise

    def _results(self, main: dict, sweep: list[dict], base: str) -> dict:
        keep = ("setting", "label", "source", "runs", "rows", "average", "msa", "signatures", "identifier_accuracy",
                "bootstrap")
        seeds = self.config.seed_list
        results = {
            "id": self.config.id, "name": self.config.name, "config": self.config.to_dict(),
            "command": self.command or f"python -m backend experiment --config experiments/{self.config.id}.yaml",
            "hardware": hardware(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "wall_time_s": round(time.time() - self.started, 1),
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

    def _figures(self, main: dict, sweep: list[dict], report) -> dict[str, str]:
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
    from backend.evaluation import report

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
        from backend.arms import arms_markdown

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


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


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


def _pretrain_info(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "pretrain.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _pretrain_summary(base: str) -> dict:
    info = _pretrain_info(paths.base_dir(base)) if "/" not in base else {}
    return {k: info.get(k) for k in ("name", "preset", "params", "steps", "final_loss", "created", "source")
            if k in info}


def _evaluated_as(report: dict, ev: EvalSpec, seed: int) -> bool:
    """Whether a run's eval.json was made exactly as `ev` asks (by another experiment that
    shares the run, say): same split and generation settings, so it need not be redone."""
    gen = report.get("generation") or {}
    return (report.get("split") == ev.split and gen.get("max_sentences") == ev.max_sentences
            and gen.get("batch_size") == ev.batch_size and gen.get("max_new_tokens") == ev.max_new_tokens
            and gen.get("num_beams") == ev.num_beams and gen.get("seed") == seed)


def _adapter_stamp(run: Run) -> float | None:
    files = sorted(run.adapter_dir.glob("*.safetensors"))
    return files[0].stat().st_mtime if files else None


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
                   command: str | None = None) -> dict:
    """Run (or finish) an experiment and return its results.json content."""
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    return Experiment(config, progress=progress, fresh=fresh, command=command).run()
