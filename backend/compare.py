"""Side-by-side comparison: one source sentence through base, baseline and decoupled.

What the Compare page (and `bench/compare_latency.py`) needs, with no Streamlit in it:

- `find_pairs` pairs every finished decoupled run with the newest finished baseline that
  differs from it only in the penalty's settings (`backend.runs.PAIR_FREE_SETTINGS`: lambda,
  layers, probe; same base, source, dialects, seed, steps and LoRA), because only such a pair
  isolates the effect of the penalty. `pair_curves` and `measurement_notes` chart and word
  what the two runs' probes measured when their layers or probe settings differ.
- `load_pair_model` loads the base once and both adapters onto it ("baseline",
  "decoupled"); the page keeps the result in `st.cache_resource`.
- `compare` runs the three systems in ONE batched `generate` call through peft's
  mixed-adapter batches (`adapter_names=["__base__", "baseline", "decoupled"]`): the prompt is
  the same for the three rows, so there is no padding and the batch costs about as much as a
  single row on a CPU. If peft refuses the mixed batch (an adapter type without support), it
  falls back to three sequential calls of `backend.modeling.generate`.
- Each output gets the dialect identifier's label and confidence, and sentence chrF++
  against the reference when there is one.

Target varieties the adapters were not trained on are allowed (the embedded tokenizer has a
tag for every variety): `Comparison.trained_on_target` is False and the page says so, since
the output then shows what an unseen tag does rather than what the method does.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import paths, varieties
from backend.data import load_corpus
from backend.errors import LimitError, RunError, UserError
from backend.prompts import Prompter
from backend.runs import Run, RunConfig, list_runs
from backend.safety import check_text

# torch, the model loaders, steering and the metrics are imported where they are used: the
# Overlap and Results pages import this module only to list pairs and read their files.

SYSTEMS = ("base", "baseline", "decoupled")
TITLES = {"base": "Base model (no adapter)", "baseline": "Baseline adapter (λ = 0)",
          "decoupled": "Decoupled adapter"}
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
# Settings in which a pair's runs may differ that change what the baseline's probe measures.
_MEASURED_WITH = ("layers", "probe_every", "probe_rank", "probe_steps", "probe_batch", "subspace")


@dataclass(frozen=True)
class RunPair:
    baseline: Run
    decoupled: Run

    @property
    def key(self) -> str:
        return f"{self.baseline.id}+{self.decoupled.id}"

    def config(self) -> RunConfig:
        return self.decoupled.config()

    def trained_varieties(self) -> list[str]:
        cfg = self.config()
        dialects = varieties.parse_list(cfg.dialects)
        return (["MSA"] if cfg.include_msa else []) + [d for d in dialects if d != "MSA"]

    @property
    def label(self) -> str:
        cfg = self.config()
        dialects = ",".join(cfg.dialects) if len(cfg.dialects) <= 6 else f"{len(cfg.dialects)} dialects"
        return (f"{dialects} · base {Path(cfg.base).name} · {cfg.source} · {cfg.steps} steps · "
                f"λ={cfg.lam:g} · seed {cfg.seed} · {self.decoupled.id}")


def _finished(run: Run) -> RunConfig | None:
    """The run's settings if it is complete (`Run.is_complete`), else None."""
    return run.config() if run.is_complete() else None


def damaged_runs(root: Path | None = None) -> list[tuple[str, str]]:
    """(run id, what is wrong) for every damaged run folder: the pages list them, never offer them."""
    return [(run.id, why) for run in list_runs(root) if (why := run.damage()) is not None]


def find_pairs(root: Path | None = None) -> list[RunPair]:
    """Finished (baseline, decoupled) pairs that differ only in `PAIR_FREE_SETTINGS` (lambda,
    the layers and the probe), newest decoupled first.

    Each decoupled run pairs with the newest matching baseline started before it (run ids
    begin with their start time; an experiment or `train --method both` trains the baseline
    first), else with the newest matching one. Runs with a missing or unreadable config, or
    without a saved adapter, or with any damaged file (`Run.damage`) are skipped, so a broken
    run folder never hides the others."""
    baselines: dict[tuple, list[Run]] = {}
    decoupled: list[tuple[tuple, Run]] = []
    for run in list_runs(root):  # newest first
        config = _finished(run)
        if config is None:
            continue
        key = config.pair_key()
        if config.method == "baseline":
            baselines.setdefault(key, []).append(run)
        else:
            decoupled.append((key, run))
    pairs = []
    for key, run in decoupled:
        candidates = baselines.get(key)
        if candidates:
            before = [b for b in candidates if b.id < run.id]
            pairs.append(RunPair((before or candidates)[0], run))
    return pairs


def get_pair(key: str, root: Path | None = None) -> RunPair:
    for pair in find_pairs(root):
        if pair.key == key:
            return pair
    raise RunError(f"no finished run pair {key!r}; it may have been deleted")


# --- what the two runs' probes measured ------------------------------------------------------

def _number(value: object) -> float | None:
    """A finite number from a file's value, or None (text, lists, true/false, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _layer_order(layer: str) -> tuple:
    return (0, int(layer), "") if layer.isdigit() else (1, 0, layer)


def _layers_text(layers: list[str]) -> str:
    return ", ".join(layers) if layers else "none"


@dataclass(frozen=True)
class PairCurves:
    """One per-layer figure of metrics.jsonl (overlap, probe_acc...) for both runs of a pair.

    `rows` ({run, step, layer, value}) keep only the layers both runs measured, when they
    share any: a pair may differ in `layers`, and a curve without its counterpart compares
    with nothing. When they share none, every row is kept and `note` says they do not compare.
    """

    rows: list[dict[str, Any]]
    measured: dict[str, list[str]]  # run ("baseline", "decoupled") -> the layers it logged
    shared: list[str]

    @property
    def note(self) -> str | None:
        """The layers left out (or why nothing compares), in words; None when both measured alike."""
        base, dec = self.measured.get("baseline", []), self.measured.get("decoupled", [])
        if not base or not dec or base == dec:
            return None
        if not self.shared:
            return (f"The two runs measured different layers (baseline: {_layers_text(base)}; decoupled: "
                    f"{_layers_text(dec)}), so their curves do not compare layer by layer.")
        return (f"The baseline measured layers {_layers_text(base)} and the decoupled run layers "
                f"{_layers_text(dec)}; shown are the layers both measured: {_layers_text(self.shared)}.")


def pair_curves(pair: RunPair, key: str) -> PairCurves:
    """`key`'s per-layer values at every logged step of both runs (see PairCurves)."""
    rows: list[dict[str, Any]] = []
    measured: dict[str, list[str]] = {}
    for method, run in (("baseline", pair.baseline), ("decoupled", pair.decoupled)):
        layers: set[str] = set()
        for record in run.metrics():
            values, step = record.get(key), _number(record.get("step"))
            if not isinstance(values, dict) or step is None:
                continue
            for layer, value in values.items():
                if _number(value) is not None:
                    layers.add(str(layer))
                    rows.append({"run": method, "step": step, "layer": str(layer), "value": _number(value)})
        measured[method] = sorted(layers, key=_layer_order)
    shared = [layer for layer in measured["baseline"] if layer in set(measured["decoupled"])]
    if shared:
        rows = [r for r in rows if r["layer"] in set(shared)]
    return PairCurves(rows, measured, shared)


def measurement_notes(pair: RunPair) -> list[str]:
    """In words, how the two runs' probes were set differently (layers, cadence, rank...).

    Only the decoupled run acts on its probe; the baseline's measures. Settings that differ
    change what the figures mean side by side, so the pages say so next to the charts.
    """
    base, dec = pair.baseline.config(), pair.decoupled.config()
    differ = [name for name in _MEASURED_WITH if getattr(base, name) != getattr(dec, name)]

    def shown(config: RunConfig, name: str) -> str:
        value = getattr(config, name)
        if name == "layers":
            return "the default layers" if value is None else "layers " + ", ".join(map(str, value))
        return f"{name}={value}"

    notes = []
    if "layers" in differ:
        notes.append(f"The baseline probed {shown(base, 'layers')}, the decoupled run {shown(dec, 'layers')}.")
    if "probe_every" in differ:
        notes.append(f"The baseline updated its probe every {base.probe_every} steps, the decoupled run every "
                     f"{dec.probe_every}: their points fall on different steps.")
    other = [name for name in differ if name not in ("layers", "probe_every")]
    if other:
        pairs = "; ".join(f"{shown(base, n)} against {shown(dec, n)}" for n in other)
        notes.append(f"Their probes were set differently ({pairs}): the MSA subspace each run measured against "
                     "was not estimated alike, so compare the curves' shapes more than their exact heights.")
    return notes


# --- loading -----------------------------------------------------------------------------------

@dataclass
class PairModel:
    """The base with both adapters of a pair loaded, plus what scoring needs."""

    pair: RunPair
    model: Any  # peft.PeftModel holding "baseline" and "decoupled"
    tokenizer: Any
    identifier: Any | None  # backend.evaluation.DialectIdentifier
    identifier_note: str = ""
    mixed_batch: bool = True  # set to False the first time peft refuses a mixed batch
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def load_pair_model(pair: RunPair, device: str | None = None) -> PairModel:
    """Base + both adapters; a missing or corrupt piece raises ModelLoadError / RunError."""
    from backend.modeling import load_adapter, load_base  # lazy: torch; pages list runs via compare

    b_cfg, d_cfg = pair.baseline.config(), pair.decoupled.config()
    if b_cfg.base != d_cfg.base:
        raise RunError(f"runs {pair.baseline.id} and {pair.decoupled.id} use different base models")
    for run in (pair.baseline, pair.decoupled):
        if not run.has_adapter():
            raise RunError(f"run {run.id} has no saved adapter (its adapter/ folder is missing or incomplete)")
    model, tokenizer = load_base(d_cfg.base, device=device)
    model = load_adapter(model, pair.baseline.adapter_dir, "baseline")
    model = load_adapter(model, pair.decoupled.adapter_dir, "decoupled")
    identifier, note = load_identifier(d_cfg)
    return PairModel(pair, model, tokenizer, identifier, note)


def load_identifier(config: RunConfig) -> tuple[Any | None, str]:
    """The dialect identifier for the pair's corpus, the very one the evaluation uses
    (trained on the corpus's train split, cached under models/identifiers/). Returns
    (identifier or None, a note saying why None)."""
    try:
        from backend.evaluation.evaluate import identifier_for  # lazy: sacrebleu; pages list runs via compare

        return identifier_for(load_corpus(config.source))[0], ""
    except UserError as e:
        return None, f"no dialect identifier: {e}"


# --- comparing ---------------------------------------------------------------------------------

@dataclass
class SystemOutput:
    system: str
    title: str
    text: str
    label: str | None = None
    confidence: float | None = None
    chrf: float | None = None


@dataclass
class Comparison:
    source: str
    source_variety: str
    target_variety: str
    reference: str | None
    prompt: str
    outputs: list[SystemOutput]
    seconds: float
    batched: bool
    trained_on_target: bool


def _check_source(text: str) -> str:
    return " ".join(check_text(text, "the source sentence").split())


def generate_three(pm: PairModel, prompt: str, max_new_tokens: int = 48,
                   steer: Any = None) -> tuple[list[str], bool]:
    """Outputs of base, baseline and decoupled for one prompt; (texts, whether batched).

    With `steer` (a backend.steering.RowSteer) a fourth row, the steered system, joins the same
    batch: its adapter through peft's mixed batch, its steering through hooks on that row only."""
    import torch  # lazy: torch; pages list runs via compare

    from backend.modeling import generate  # lazy: torch; pages list runs via compare

    model, tok = pm.model, pm.tokenizer
    with pm.lock:  # adapter switching and mixed-batch hooks are model-wide state
        if pm.mixed_batch:
            bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
            ids = bos + tok(prompt, add_special_tokens=False)["input_ids"]
            limit = getattr(model.config, "max_position_embeddings", None)
            if limit is not None and len(ids) >= limit:
                raise LimitError(f"the prompt is {len(ids)} tokens long; this model reads at most {limit - 1}")
            budget = max_new_tokens if limit is None else min(max_new_tokens, limit - len(ids))
            device = next(model.parameters()).device
            names = [BASE_ADAPTER, "baseline", "decoupled"]
            if steer is not None:
                names.append(BASE_ADAPTER if steer.system == "base" else steer.system)
            input_ids = torch.tensor([ids] * len(names), device=device)
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            try:
                hooks = steer.hooks(model, rows=[3]) if steer is not None else contextlib.nullcontext()
                with torch.no_grad(), hooks:
                    out = model.generate(
                        input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                        adapter_names=names,
                        max_new_tokens=budget, do_sample=False, num_beams=1, pad_token_id=pad,
                    )
                texts = tok.batch_decode(out[:, len(ids):], skip_special_tokens=True)
                return [t.strip() for t in texts], True
            except (ValueError, TypeError, NotImplementedError):
                pm.mixed_batch = False
        outputs = []
        with model.disable_adapter():
            outputs += generate(model, tok, [prompt], max_new_tokens=max_new_tokens)
        for name in ("baseline", "decoupled"):
            model.set_adapter(name, inference_mode=True)
            outputs += generate(model, tok, [prompt], max_new_tokens=max_new_tokens)
        if steer is not None:
            if steer.system == "base":
                with model.disable_adapter(), steer.hooks(model):
                    outputs += generate(model, tok, [prompt], max_new_tokens=max_new_tokens)
            else:
                model.set_adapter(steer.system, inference_mode=True)
                with steer.hooks(model):
                    outputs += generate(model, tok, [prompt], max_new_tokens=max_new_tokens)
        return outputs, False


def compare(pm: PairModel, source: str, target_variety: str, *, source_variety: str = "MSA",
            reference: str | None = None, max_new_tokens: int = 48, steer: Any = None,
            steer_system: str = "decoupled") -> Comparison:
    """Translate `source` into `target_variety` with the three systems and score each output.

    `steer` (a backend.steering.SteerSpec) adds a fourth output: `steer_system` (base, baseline
    or decoupled) steered at inference time, generated in the same batched call."""
    source = _check_source(source)
    target = varieties.code(target_variety)
    src_variety = varieties.code(source_variety)
    prompt = Prompter(pm.tokenizer, pm.pair.config().prompt_format)(source, src_variety, target)
    start = time.perf_counter()
    systems, titles, row = list(SYSTEMS), dict(TITLES), None
    if steer is not None:
        from backend import steering  # lazy: torch; pages list runs via compare

        row = steering.for_pair(pm, steer, steer_system, target)
        systems.append("steered")
        titles["steered"] = f"Steered {steer_system}: {row.steerer.spec.label}"
    texts, batched = generate_three(pm, prompt, max_new_tokens, steer=row)
    labels: list[tuple[str | None, float | None]] = [(None, None)] * len(texts)
    if pm.identifier is not None:
        labels = _identify(pm.identifier, texts)
    chrfs: list[float | None] = [None] * len(texts)
    if reference and reference.strip():
        from backend.evaluation.metrics import sentence_chrf  # lazy: sacrebleu; pages list runs via compare

        chrfs = [float(sentence_chrf(t, reference)) for t in texts]
    seconds = time.perf_counter() - start
    outputs = [SystemOutput(s, titles[s], t, lab, conf, c)
               for s, t, (lab, conf), c in zip(systems, texts, labels, chrfs)]
    return Comparison(source, src_variety, target, reference or None, prompt, outputs, seconds, batched,
                      target in pm.pair.trained_varieties())


def _identify(identifier: Any, texts: list[str]) -> list[tuple[str | None, float | None]]:
    """(label, probability of that label) per text; an empty output has no label."""
    return [identifier.label(t) if t.strip() else (None, None) for t in texts]


def split_examples(source: str, target_variety: str, split: str = "test", limit: int = 200) -> list[Any]:
    """Pairs into `target_variety` from one split of a corpus spec (the first `limit`)."""
    target = varieties.code(target_variety)
    pairs = load_corpus(source).filter(split=split, targets=[target]).pairs
    return pairs[:limit]



# --- experiments (read-only; written by the evaluation) ----------------------------------------

def list_experiments(root: Path | None = None) -> list[str]:
    """Experiment ids with a results.json, newest first (by the file's modification time)."""
    root = root or paths.experiments_dir()
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and (d / "results.json").is_file()]
    return [d.name for d in sorted(found, key=lambda d: (d / "results.json").stat().st_mtime, reverse=True)]


def read_experiment(experiment_id: str, root: Path | None = None) -> dict[str, Any]:
    """An experiment's results.json; a missing or corrupt file raises RunError."""
    root = root or paths.experiments_dir()
    if not experiment_id or "/" in experiment_id or "\\" in experiment_id or experiment_id.startswith("."):
        raise RunError(f"invalid experiment id {experiment_id!r}")
    path = root / experiment_id / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"experiment {experiment_id}: results.json is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"experiment {experiment_id}: results.json is unreadable ({type(e).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows", []), list):
        raise RunError(f"experiment {experiment_id}: results.json does not hold an experiment's results")
    return data


def _run_id(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("id") or value.get("run_id")
    return None


def experiment_for(pair: RunPair, root: Path | None = None) -> tuple[str, dict[str, Any]] | None:
    """The newest readable experiment whose runs are exactly this pair, if any."""
    for experiment_id in list_experiments(root):
        try:
            data = read_experiment(experiment_id, root)
        except RunError:
            continue
        runs = data.get("runs") or {}
        if _run_id(runs.get("baseline")) == pair.baseline.id and _run_id(runs.get("decoupled")) == pair.decoupled.id:
            return experiment_id, data
    return None


def load_error_message(error: BaseException) -> str:
    """A one-line reason for a model that failed to load, for the page."""
    if isinstance(error, UserError):
        return str(error)
    return f"The models could not be loaded ({type(error).__name__}); the details are in the server log."


__all__ = [
    "SYSTEMS", "Comparison", "PairModel", "RunPair", "SystemOutput", "compare", "damaged_runs", "find_pairs",
    "experiment_for", "generate_three", "get_pair", "list_experiments", "load_identifier", "load_pair_model",
    "read_experiment", "split_examples",
]
