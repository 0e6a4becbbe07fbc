"""Steered evaluation and an experiment's `arms:`: train-time decoupling beside inference-time steering.

An *arm* is one system evaluated on the experiment's split: a model (`base`, the `baseline`
adapter or the `decoupled` adapter) with or without steering (`backend.steering`). The
table puts every arm against one reference arm (default `baseline`) on the same sentences:
chrF++, BLEU, fidelity and MSA leakage per variety and averaged over dialects, the delta
against the reference and its paired-bootstrap p-value (`metrics.paired_bootstrap_average`,
stratified over seeds per variety and over (dialect, seed) for the average: the functions
the main table uses).

Where results go, never over a run's own evaluation:

- a steered run: `models/runs/<id>/eval-steer-<slug>.json` and `outputs-steer-<slug>.jsonl`
  beside its `eval.json` (`python -m backend evaluate RUN --steer ...` writes the same files);
- a base arm: `models/experiments/<id>/arms/<arm slug>/eval.json` and `outputs.jsonl`.

Config (in an experiment YAML):

    arms: [baseline, decoupled, base, base+vector, baseline+project, decoupled+project]
    steering:
      project: {strength: 1.0, layers: [3, 4, 5]}   # defaults of the `+project` arms
      vector: {strength: 1.0, layers: [3]}          # defaults of the `+vector` arms
      reference: baseline                           # the arm the deltas are against
      per_variety: 64                               # training pairs per dialect for estimates

An arm may also be `base+vector@2` (strength 2) or a mapping
`{name, system, steer: {method, strength, layers}, subspace: auto|run|estimate}`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend import paths, steering, varieties
from backend.errors import RunError, UserError
from backend.evaluation import metrics
from backend.evaluation.evaluate import evaluate_model, load_run
from backend.modeling import load_base
from backend.prompts import DEFAULT_FORMAT
from backend.runs import Run, read_jsonl, write_json_atomic, write_text_atomic
from backend.stages import adapter_stamp
from backend.steering import EstimateSettings, SteerSpec

Progress = Callable[[str], None]
SYSTEMS = ("base", "baseline", "decoupled")
STEERING_KEYS = {"project", "vector", "reference", "per_variety"}


# --- steered evaluation of one run or base ---------------------------------------------------

def steered_files(run_dir: Path, slug: str) -> tuple[Path, Path]:
    """(eval file, outputs file) of a steered evaluation inside a run folder."""
    return run_dir / f"eval-steer-{slug}.json", run_dir / f"outputs-steer-{slug}.jsonl"


def _write(eval_path: Path, outputs_path: Path, report: dict, lines: list[dict]) -> None:
    write_text_atomic(outputs_path, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    write_json_atomic(eval_path, report)


def evaluate_run_steered(run: Run, spec: SteerSpec, *, split: str = "test", dialects: Sequence[str] | None = None,
                         max_sentences: int | None = None, batch_size: int = 16, max_new_tokens: int = 48,
                         num_beams: int = 1, seed: int = 0, subspace: str = "auto", corpus: Any = None,
                         settings: EstimateSettings = EstimateSettings(), progress: Progress | None = None) -> dict:
    """`evaluate_run` with steering: the same sentences and scores, written to
    eval-steer-<slug>.json / outputs-steer-<slug>.jsonl beside the run's own eval.json."""
    say = progress or (lambda message: None)
    loaded = load_run(run, split, dialects, corpus, say)
    config, corpus, model, tokenizer = loaded.config, loaded.corpus, loaded.model, loaded.tokenizer
    steerer = steering.prepare(model, tokenizer, spec, base=config.base, run=run, adapter_dir=run.adapter_dir,
                               corpus_spec=config.source, prompt_format=config.prompt_format, subspace=subspace,
                               settings=settings, corpus=corpus, progress=say)
    slug = steerer.spec.slug(estimated=not steerer.data.origin.startswith("run "))
    report, lines = evaluate_model(model, tokenizer, corpus, loaded.codes, split, label=f"{run.id} steered {slug}",
                                   prompt_format=config.prompt_format, max_sentences=max_sentences,
                                   batch_size=batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                   seed=seed, progress=say, steering=steerer)
    eval_path, outputs_path = steered_files(run.dir, slug)
    report = {"run": run.id, "method": config.method, "split": split, "source": config.source, "base": config.base,
              **report, "files": {"eval": eval_path.name, "outputs": outputs_path.name}}
    _write(eval_path, outputs_path, report, lines)
    run.log(f"evaluated on {split} with steering {steerer.spec.label}: average chrF++ "
            f"{_fmt(report['average']['chrf'])} -> {eval_path.name}")
    return report


def evaluate_base_arm(base: str, spec: SteerSpec | None, *, corpus: Any, corpus_spec: str, dialects: Sequence[str],
                      split: str = "test", max_sentences: int | None = None, batch_size: int = 16,
                      max_new_tokens: int = 48, num_beams: int = 1, seed: int = 0, prompt_format: str | None = None,
                      out_dir: Path | None = None, settings: EstimateSettings = EstimateSettings(),
                      progress: Progress | None = None) -> tuple[dict, list[dict]]:
    """The bare base on the runs' varieties (the dialects, plus MSA where the split has it),
    steered or not; written to `out_dir` (eval.json, outputs.jsonl) when given."""
    say = progress or (lambda message: None)
    template = prompt_format or DEFAULT_FORMAT
    codes = [c for c in varieties.parse_list(list(dialects)) if c != "MSA"]
    if any(p.split == split and p.target_variety == "MSA" for p in corpus.pairs):
        codes.append("MSA")
    model, tokenizer = load_base(base)
    steerer = None
    if spec is not None:
        steerer = steering.prepare(model, tokenizer, spec, base=base, corpus_spec=corpus_spec,
                                   dialects=[c for c in codes if c != "MSA"], prompt_format=template,
                                   subspace="estimate", settings=settings, corpus=corpus, progress=say)
    label = f"base {base}" + (f" steered {steerer.spec.label}" if steerer else "")
    report, lines = evaluate_model(model, tokenizer, corpus, codes, split, label=label, prompt_format=template,
                                   max_sentences=max_sentences, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                   num_beams=num_beams, seed=seed, progress=say, steering=steerer)
    report = {"run": None, "method": "base", "split": split, "source": corpus_spec, "base": base, **report}
    if out_dir is not None:
        _write(out_dir / "eval.json", out_dir / "outputs.jsonl", report, lines)
    return report, lines


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


# --- arms ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arm:
    name: str
    system: str  # base | baseline | decoupled
    steer: SteerSpec | None = None
    subspace: str = "auto"

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=-]+", "-", self.name).strip("-") or "arm"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "system": self.system, "steer": self.steer.to_dict() if self.steer else None,
                "subspace": self.subspace}


def _steering_defaults(section: Any) -> dict[str, Any]:
    section = section or {}
    if not isinstance(section, dict):
        raise UserError("`steering` must be a mapping (project, vector, reference, per_variety)")
    unknown = sorted(set(section) - STEERING_KEYS)
    if unknown:
        raise UserError(f"unknown keys in `steering`: {', '.join(unknown)} (known: {', '.join(sorted(STEERING_KEYS))})")
    for method in ("project", "vector"):
        if not isinstance(section.get(method) or {}, dict):
            raise UserError(f"`steering.{method}` must be a mapping of strength and layers")
    return section


def parse_arms(items: Any, steering_section: Any = None) -> list[Arm]:
    """The config's `arms:` as Arm objects, checked (names unique, systems and methods known)."""
    defaults = _steering_defaults(steering_section)
    if not isinstance(items, list) or not items:
        raise UserError("`arms` must be a non-empty list, e.g. [baseline, decoupled, base+vector]")
    arms = []
    for item in items:
        if isinstance(item, str):
            name = item.strip()
            system, _, rest = name.partition("+")
            steer = None
            if rest:
                method, _, strength = rest.partition("@")
                d = dict(defaults.get(method) or {}) if method in ("project", "vector") else {}
                if strength:
                    try:
                        d["strength"] = float(strength)
                    except ValueError:
                        raise UserError(f"arm {name!r}: the strength after @ must be a number") from None
                steer = SteerSpec.from_dict({"method": method, **d})
            arm = Arm(name, system.strip(), steer)
        elif isinstance(item, dict):
            unknown = sorted(set(item) - {"name", "system", "steer", "subspace"})
            if unknown or "system" not in item:
                raise UserError(f"an arm mapping takes name, system, steer, subspace (system required), not {item!r}")
            steer = SteerSpec.from_dict(item["steer"]) if item.get("steer") else None
            name = str(item.get("name") or (item["system"] + (f"+{steer.method}@{steer.strength:g}" if steer else "")))
            arm = Arm(name, str(item["system"]), steer, str(item.get("subspace", "auto")))
        else:
            raise UserError(f"an arm is a name such as base+vector or a mapping, not {item!r}")
        if arm.system not in SYSTEMS:
            raise UserError(f"arm {arm.name!r}: the system must be one of {', '.join(SYSTEMS)}")
        if arm.subspace not in ("auto", "run", "estimate"):
            raise UserError(f"arm {arm.name!r}: subspace must be auto, run or estimate")
        arms.append(arm)
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise UserError(f"`arms` lists an arm twice: {names}")
    reference = defaults.get("reference", "baseline")
    if reference not in names:
        raise UserError(f"the reference arm {reference!r} (steering.reference) is not among the arms {names}")
    return arms


def _by_variety(lines: list[dict]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for line in lines:
        out.setdefault(line["variety"], {})[line["id"]] = line
    return out


def _stage(exp: Any, key: dict, make: Callable[[], tuple[dict, Path, Path]]) -> tuple[dict, list]:
    """A cached arm evaluation: reused while the stage record and its files agree."""
    record = exp.cached("arm", key)
    if record:
        eval_path, outputs_path = Path(record.get("eval", "")), Path(record.get("outputs", ""))
        try:
            report = json.loads(eval_path.read_text(encoding="utf-8"))
            if report.get("created") == record.get("created") and outputs_path.is_file():
                exp.say(f"arm evaluation {eval_path.parent.name}/{eval_path.name}: done earlier")
                return report, read_jsonl(outputs_path)
        except (OSError, json.JSONDecodeError):
            pass
    report, eval_path, outputs_path = make()
    exp.cache.put("arm", key, {"created": report["created"], "eval": str(eval_path), "outputs": str(outputs_path)})
    return report, read_jsonl(outputs_path)


def run_arms(exp: Any, main: dict, base: str, base_fp: str, source: str, progress: Progress | None = None) -> dict:
    """Evaluate every arm of `exp.config` (a backend.experiment.Experiment) on its split, for
    each seed's runs of the main setting, and build the arms table."""
    config = exp.config
    defaults = _steering_defaults(config.steering)
    arms = parse_arms(config.arms, defaults)
    settings = EstimateSettings(per_variety=int(defaults.get("per_variety", 64)))
    ev = config.evaluation
    seeds = config.seed_list
    by_seed = main.get("runs_by_seed") or [{"seed": seeds[0], **main["runs"]}]
    corpus = exp.corpus(source)
    eval_kw = dict(split=ev.split, max_sentences=ev.max_sentences, batch_size=ev.batch_size,
                   max_new_tokens=ev.max_new_tokens, num_beams=ev.num_beams)
    results: dict[str, list[tuple[dict, dict]]] = {}
    for arm in arms:
        per_seed: list[tuple[dict, dict]] = []
        base_result = None
        for entry in by_seed:
            seed = int(entry["seed"])
            if arm.system == "base":
                if base_result is None:
                    out_dir = exp.dir / "arms" / arm.slug
                    key = {"arm": arm.to_dict(), "base": base_fp, "source": source, "eval": eval_kw,
                           "dialects": list(config.dialects), "settings": asdict(settings)}
                    exp.say(f"arm {arm.name}", "arms")

                    def make(arm=arm, out_dir=out_dir, seed=seed) -> tuple[dict, Path, Path]:
                        run0 = Run(paths.runs_dir() / str(by_seed[0]["baseline"]))
                        report = evaluate_base_arm(base, arm.steer, corpus=corpus, corpus_spec=source,
                                                   dialects=config.dialects, seed=seed, out_dir=out_dir,
                                                   prompt_format=run0.config().prompt_format, settings=settings,
                                                   progress=lambda m: exp.say(f"  {m}"), **eval_kw)[0]
                        return report, out_dir / "eval.json", out_dir / "outputs.jsonl"

                    report, lines = _stage(exp, key, make)
                    base_result = (report, _by_variety(lines))
                per_seed.append(base_result)
                continue
            run = Run(paths.runs_dir() / str(entry[arm.system]))
            if arm.steer is None:
                report = run.eval()
                if report is None:
                    raise RunError(f"run {run.id} is not evaluated; the main setting evaluates it first")
                per_seed.append((report, _by_variety(read_jsonl(run.dir / "outputs.jsonl"))))
                continue
            exp.say(f"arm {arm.name} (seed {seed}, run {run.id})", "arms")
            key = {"arm": arm.to_dict(), "run": run.id, "adapter": adapter_stamp(run), "eval": eval_kw,
                   "seed": seed, "settings": asdict(settings)}

            def make(run=run, arm=arm, seed=seed) -> tuple[dict, Path, Path]:
                report = evaluate_run_steered(run, arm.steer, seed=seed, subspace=arm.subspace, corpus=corpus,
                                              settings=settings, progress=lambda m: exp.say(f"  {m}"), **eval_kw)
                return report, run.dir / report["files"]["eval"], run.dir / report["files"]["outputs"]

            report, lines = _stage(exp, key, make)
            per_seed.append((report, _by_variety(lines)))
        results[arm.name] = per_seed
    exp.say("arms: paired bootstrap against the reference arm", "arms")
    return arms_table(arms, results, defaults.get("reference", "baseline"), seeds, ev.bootstrap, ev.split)


def _aligned(ref: dict[str, dict], other: dict[str, dict], what: str) -> tuple[list[str], list[str], list[str]]:
    ids = sorted(ref)
    if set(ids) != set(other):
        raise RunError(f"{what} was evaluated on other sentences than the reference arm; evaluate them alike")
    return [ref[i]["hypothesis"] for i in ids], [other[i]["hypothesis"] for i in ids], [ref[i]["reference"] for i in ids]


def _mean(values: Sequence[Any]) -> float | None:
    return metrics.macro_average([v for v in values if isinstance(v, (int, float))])


def arms_table(arms: list[Arm], results: dict[str, list[tuple[dict, dict]]], reference: str, seeds: list[int],
               n_samples: int = metrics.N_BOOTSTRAP, split: str = "test") -> dict:
    """Per arm: per variety and on average, chrF++ / BLEU / fidelity / MSA leakage (means over
    seeds), the chrF++ delta against the reference arm and its paired-bootstrap p-value."""
    ref = results[reference]
    codes = [c for c in ref[0][0]["varieties"] if all(c in r[0]["varieties"] for rs in results.values() for r in rs)]
    out = []
    for arm in arms:
        mine = results[arm.name]
        rows, strata = [], []
        for code in codes:
            per_seed = []
            for (_, ref_out), (_, arm_out) in zip(ref, mine):
                per_seed.append(_aligned(ref_out.get(code, {}), arm_out.get(code, {}), f"arm {arm.name}, {code}"))
            vals = [r["varieties"][code] for r, _ in mine]
            row = {"variety": code, "name": varieties.get(code).name, "n": vals[0].get("n"),
                   **{k: _mean([v.get(k) for v in vals]) for k in ("chrf", "bleu", "fidelity", "msa_leakage")},
                   "delta": None, "p_value": None}
            if arm.name != reference:
                test = metrics.paired_bootstrap_average(per_seed, "chrf", n_samples=n_samples)
                row.update(delta=test.get("delta"), p_value=test.get("p_value"))
            rows.append(row)
            if code != "MSA":
                strata += per_seed
        dialect_rows = [r for r in rows if r["variety"] != "MSA"]
        average = {"variety": "AVG", "name": "Average over dialects", "n": sum(r["n"] or 0 for r in dialect_rows),
                   **{k: _mean([r[k] for r in dialect_rows]) for k in ("chrf", "bleu", "fidelity", "msa_leakage")},
                   "delta": None, "p_value": None}
        if arm.name != reference and strata:
            test = metrics.paired_bootstrap_average(strata, "chrf", n_samples=n_samples)
            average.update(delta=_mean([r["delta"] for r in dialect_rows]), p_value=test.get("p_value"))
        steering = [r.get("steering") for r, _ in mine if r.get("steering")]
        out.append({**arm.to_dict(), "rows": dialect_rows, "average": average,
                    "msa": next((r for r in rows if r["variety"] == "MSA"), None),
                    "steering": steering[0] if steering else None,
                    "evaluations": [r.get("run") or "base" for r, _ in mine]})
    return {"reference": reference, "split": split, "seeds": list(seeds), "bootstrap": n_samples,
            "varieties": codes, "arms": out, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "p_value_method": "paired bootstrap against the reference arm (sacrebleu's; stratified over seeds per "
                              "variety, over dialects and seeds for the average)"}


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001*" if p < 0.001 else f"{p:.3f}{'*' if p < 0.05 else ''}"


def _f(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def arms_markdown(table: dict) -> str:
    """The arms table (averages and MSA) and chrF++ per variety and arm, as markdown."""
    ref = table["reference"]
    seeds = table.get("seeds") or []
    over = f", mean over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else ""
    lines = [f"## Arms: inference-time steering beside decoupling ({table['split']} split{over})", "",
             f"| Arm | Steering | chrF++ | Δ vs {ref} | p | BLEU | Fidelity | MSA leakage | MSA chrF++ | MSA Δ | MSA p |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in table["arms"]:
        a, m = arm["average"], arm.get("msa") or {}
        st = arm.get("steering") or {}
        how = "–" if not arm.get("steer") else (f"{st.get('method')} s={st.get('strength'):g}, layers "
                                                f"{','.join(map(str, st.get('layers') or []))}")
        lines.append(f"| {arm['name']} | {how} | {_f(a.get('chrf'))} | {_signed(a.get('delta'))} | {_p(a.get('p_value'))} "
                     f"| {_f(a.get('bleu'))} | {_pct(a.get('fidelity'))} | {_pct(a.get('msa_leakage'))} "
                     f"| {_f(m.get('chrf'))} | {_signed(m.get('delta'))} | {_p(m.get('p_value'))} |")
    lines += ["", f"chrF++ and BLEU: average over {len(table['arms'][0]['rows'])} dialects. p: {table['p_value_method']}, "
              f"{table['bootstrap']} resamples; * p < 0.05. Fidelity / MSA leakage: share of outputs the dialect "
              "identifier labels as the target dialect / as MSA.", ""]
    names = [a["name"] for a in table["arms"]]
    lines += ["| Variety | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    by_arm = {a["name"]: {r["variety"]: r for r in a["rows"] + ([a["msa"]] if a.get("msa") else [])}
              for a in table["arms"]}
    for code in table["varieties"]:
        cells = []
        for name in names:
            r = by_arm[name].get(code) or {}
            mark = "*" if r.get("p_value") is not None and r["p_value"] < 0.05 else ""
            cells.append(f"{_f(r.get('chrf'))}{mark}")
        lines.append(f"| {code} | " + " | ".join(cells) + " |")
    lines += ["", f"chrF++ per variety and arm; * significantly different from {ref} (p < 0.05)."]
    return "\n".join(lines)


__all__ = ["Arm", "arms_markdown", "arms_table", "evaluate_base_arm", "evaluate_run_steered", "parse_arms",
           "run_arms", "steered_files"]
