"""Inference-time steering beside train-time decoupling: forward hooks at chosen layers.

The paper moves dialect states out of the MSA subspace by *training* (the projection
penalty). The other line of work on dialect generation steers a model at *inference* time,
with no training. Two such methods are offered here, on the bare base or on any adapter, so
that both can be compared with decoupling on one sentence (Compare page) and in one table
(experiment `arms:`):

- `project`: the inference-time mirror of the penalty. At each chosen layer l, a hidden
  state h becomes  h - s * U U^T (h - m),  with U the layer's MSA-subspace basis and m the
  *target dialect's* mean state (the penalty's own centring, per variety): strength s = 1
  removes the within-dialect component inside the MSA subspace (the centred energy there is
  then exactly 0), 0 < s < 1 shrinks it by (1 - s). U and m come from a run's
  `subspace.safetensors` (the training probe's last estimate, on that run's own states), or
  are estimated on the steered model with the project's probe (`MSASubspaceEstimator`).
- `vector`: the mean-difference ("activation addition", contrastive) vector of the steering
  literature:  h + s * (mean(target dialect states) - mean(MSA states)), estimated on the
  steered model from parallel sentences of the TRAINING split: the dialect states are the
  target tokens of `<MSA> msa <DIA> dialect`, the MSA states those of `<DIA> dialect <MSA>
  msa` for the same pairs (the direction in which the probe sees MSA in training), so the
  difference holds content fixed and keeps "which variety is being written".

Choices the literature leaves open, made here:

- **Which states.** "Layer l" is `hidden_states[l]` (1..n), the states the probe and the
  penalty use: the output of decoder layer l (l < n), or of the final norm for l = n
  (transformers returns the normed state there). `backend.modeling.layers` finds those modules and a
  test checks that a hook on them sees exactly `output_hidden_states`.
- **Which positions.** Only the states that produce output (`positions="generated"`): at
  prefill the last prompt position (it predicts the first token), then every generated
  token (one position per step with the KV cache). The prompt's source sentence is left
  alone, as the penalty leaves prompt tokens alone; `positions="all"` steers every position.
- **Targets without statistics.** Steering towards MSA does nothing (the penalty never acts
  on MSA, and the MSA-minus-MSA vector is 0). A dialect the subspace's probe never saw is
  centred on the mean of the dialects it did see.
- **Strength.** project: s in [0, 1]. vector: s in [0, 4]; s = 1 moves the MSA mean exactly
  onto the dialect mean, larger values overshoot as in the literature's coefficients.
- **Hooks never stay.** `hooks()` is a context manager: the handles are removed in a
  `finally`, so a generation that raises (out of memory, a bad prompt, a cancelled
  request) leaves the model unsteered for the next caller.
- **Cache.** An estimate (means of every variety and the probe's subspace, one file serving
  both methods) is saved under `DD_MODELS_DIR/steering/<key>.safetensors`, keyed by a hash
  of the base's fingerprint (config and weight files' names, sizes and mtimes), the
  adapter's, the corpus spec AND the text of the pairs it is estimated from, the layers,
  the dialects and the estimation settings: rebuilding the base or changing the corpus
  changes the key, so a stale estimate is never reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from backend import paths, varieties
from backend.data import load_corpus
from backend.decoupling import MSASubspaceEstimator, collect_states, default_layers
from backend.errors import RunError, UserError
from backend.examples import IGNORE, encode
from backend.modeling import generate, resolve_base
from backend.modeling.layers import layer_modules, n_layers
from backend.prompts import DEFAULT_FORMAT, Prompter

METHODS = ("project", "vector")
MAX_STRENGTH = {"project": 1.0, "vector": 4.0}
POSITIONS = ("generated", "all")
CACHE_VERSION = 1
Progress = Callable[[str], None]


# --- what the user asks for --------------------------------------------------------------

def parse_layers(value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """`"3,4"` / `[3, 4]` -> (3, 4); None or empty -> None (the default layers)."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(" ", ",").split(",") if p.strip()]
        try:
            items = [int(p) for p in parts]
        except ValueError:
            raise UserError(f"layers must be whole numbers separated by commas, not {value!r}") from None
    else:
        items = list(value)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
            raise UserError(f"layers must be whole numbers, not {value!r}")
    if any(x < 1 for x in items):
        raise UserError(f"layers are numbered from 1 (hidden_states indices), not {value!r}")
    return tuple(sorted(set(items))) or None


@dataclass(frozen=True)
class SteerSpec:
    """A steering request: method, strength and layers (None: the run's or the default layers)."""

    method: str
    strength: float
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown steering method {self.method!r}; choose {' or '.join(METHODS)}")
        try:
            strength = float(self.strength)
        except (TypeError, ValueError):
            raise UserError(f"steering strength must be a number, not {self.strength!r}") from None
        top = MAX_STRENGTH[self.method]
        if not 0.0 <= strength <= top:
            raise UserError(f"{self.method} strength must lie in [0, {top:g}], not {strength:g}")
        object.__setattr__(self, "strength", strength)
        object.__setattr__(self, "layers", parse_layers(self.layers))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SteerSpec:
        if not isinstance(data, dict) or "method" not in data:
            raise UserError(f"a steering setting needs `method` (project or vector), not {data!r}")
        unknown = sorted(set(data) - {"method", "strength", "layers"})
        if unknown:
            raise UserError(f"unknown steering settings: {', '.join(unknown)} (known: method, strength, layers)")
        return cls(str(data["method"]), data.get("strength", 1.0), data.get("layers"))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "strength": self.strength,
                "layers": list(self.layers) if self.layers else None}

    def with_layers(self, layers: Sequence[int]) -> SteerSpec:
        return SteerSpec(self.method, self.strength, tuple(layers))

    @property
    def label(self) -> str:
        where = ",".join(map(str, self.layers)) if self.layers else "default"
        return f"{self.method}, s={self.strength:g}, layers {where}"

    def slug(self, estimated: bool = False) -> str:
        """For file names: `project-s1-L3-4-5` (`project-est-...` when the subspace was
        estimated on the model rather than read from the run)."""
        where = "-".join(map(str, self.layers)) if self.layers else "default"
        return f"{self.method}{'-est' if estimated and self.method == 'project' else ''}-s{self.strength:g}-L{where}"


# --- the estimated or saved statistics ---------------------------------------------------

@dataclass
class SteeringData:
    """Per layer: the MSA-subspace basis U (d x r) and each variety's mean state."""

    layers: list[int]
    bases: dict[int, Tensor]
    means: dict[int, dict[str, Tensor]]
    origin: str
    meta: dict[str, Any] = field(default_factory=dict)

    def rank(self, layer: int) -> int:
        U = self.bases.get(layer)
        return 0 if U is None else int(U.shape[1])

    def _dialect_means(self, layer: int) -> list[Tensor]:
        return [m for v, m in self.means.get(layer, {}).items() if v != "MSA" and bool(m.abs().sum() > 0)]

    def centre(self, layer: int, target: str) -> Tensor | None:
        """The target dialect's mean; a dialect without one gets the mean of the others."""
        m = self.means.get(layer, {}).get(target)
        if m is not None and bool(m.abs().sum() > 0):
            return m
        others = self._dialect_means(layer)
        return torch.stack(others).mean(0) if others else None

    def vector(self, layer: int, target: str) -> Tensor | None:
        """mean(target dialect) - mean(MSA), or None (MSA target, or no statistics)."""
        if target == "MSA":
            return None
        means = self.means.get(layer, {})
        msa, dia = means.get("MSA"), means.get(target)
        if msa is None or dia is None or not bool(dia.abs().sum() > 0):
            return None
        return dia - msa

    def tensors(self) -> dict[str, Tensor]:
        out = {}
        for layer in self.layers:
            out[f"basis.{layer}"] = self.bases[layer].contiguous().float()
            for code, m in self.means.get(layer, {}).items():
                out[f"mean.{layer}.{code}"] = m.contiguous().float()
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], layers: Sequence[int], origin: str,
                     meta: dict[str, Any] | None = None) -> SteeringData:
        bases, means = {}, {}
        for layer in layers:
            bases[layer] = tensors[f"basis.{layer}"]
            means[layer] = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"mean.{layer}.")}
        return cls(list(layers), bases, means, origin, dict(meta or {}))


def run_classes(run) -> list[str]:
    """Class index -> variety of a run's probe: MSA, then the run's dialects (as training does)."""
    summary = (run.state().get("summary") or {}) if isinstance(run.state(), dict) else {}
    classes = summary.get("classes")
    if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
        return list(classes)
    config = run.config()
    return ["MSA", *[d for d in varieties.parse_list(config.dialects) if d != "MSA"]]


def run_layers(run) -> list[int]:
    """The layers a run's probe watched (its subspace file's layers)."""
    summary = run.state().get("summary") or {}
    layers = summary.get("layers") if isinstance(summary, dict) else None
    if isinstance(layers, list) and layers:
        return [int(x) for x in layers]
    config = run.config()
    if config.layers:
        return list(config.layers)
    return subspace_layers(run)


def subspace_layers(run) -> list[int]:
    path = run.dir / "subspace.safetensors"
    if not path.is_file():
        return []
    with safe_open(str(path), framework="pt") as f:
        return sorted(int(k.split(".")[1]) for k in f.keys() if k.startswith("basis."))


def from_run(run, layers: Sequence[int] | None = None) -> SteeringData:
    """A run's saved MSA subspace and per-variety means (the training probe's last estimate)."""
    path = run.dir / "subspace.safetensors"
    if not path.is_file():
        raise RunError(f"run {run.id} has no subspace.safetensors (it has not finished training)")
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise RunError(f"run {run.id}: subspace.safetensors is unreadable ({type(e).__name__})") from None
    have = sorted(int(k.split(".")[1]) for k in tensors if k.startswith("basis."))
    layers = list(layers) if layers else have
    missing = [x for x in layers if x not in have]
    if missing:
        raise UserError(f"run {run.id}'s MSA subspace covers layers {','.join(map(str, have))}, not "
                        f"{','.join(map(str, missing))}; choose among them, or estimate a subspace on the model")
    classes = run_classes(run)
    bases, means = {}, {}
    for layer in layers:
        bases[layer] = tensors[f"basis.{layer}"].float()
        table = tensors.get(f"means.{layer}")
        means[layer] = {} if table is None else {c: table[i].float() for i, c in enumerate(classes)
                                                if i < table.shape[0]}
    return SteeringData(layers, bases, means, f"run {run.id}: subspace.safetensors",
                        {"run": run.id, "classes": classes})


# --- the modules whose outputs are hidden_states[l]: backend.modeling.layers -------------

def base_layer_count(base: str) -> int | None:
    """The number of decoder layers of a base, read from its config.json without loading it."""
    try:
        config = json.loads((Path(resolve_base(base)) / "config.json").read_text(encoding="utf-8"))
    except (UserError, OSError, ValueError):
        return None
    n = config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers")
    return int(n) if isinstance(n, int) else None


# --- the hooks ---------------------------------------------------------------------------

def _operator(data: SteeringData, spec: SteerSpec, layer: int, target: str) -> Callable[[Tensor], Tensor] | None:
    """x (..., d, float32) -> steered x, or None where steering does nothing at this layer."""
    s = float(spec.strength)
    if spec.method == "project":
        if target == "MSA" or data.rank(layer) == 0:
            return None
        U = data.bases[layer].float()
        c = data.centre(layer, target)
        c = torch.zeros(U.shape[0]) if c is None else c.float()
        cache: dict[Any, tuple[Tensor, Tensor]] = {}

        def project(x: Tensor) -> Tensor:
            key = x.device
            if key not in cache:
                cache[key] = (U.to(x.device), c.to(x.device))
            u, m = cache[key]
            return x - s * ((x - m) @ u) @ u.T

        return project
    v = data.vector(layer, target)
    if v is None:
        return None
    v = v.float()
    on: dict[Any, Tensor] = {}

    def add(x: Tensor) -> Tensor:
        if x.device not in on:
            on[x.device] = v.to(x.device)
        return x + s * on[x.device]

    return add


def _hook(op: Callable[[Tensor], Tensor], rows: Sequence[int] | None, positions: str):
    def fn(module: nn.Module, args: Any, output: Any) -> Any:
        h = output[0] if isinstance(output, tuple) else output
        if not torch.is_tensor(h) or h.dim() != 3:
            return None
        # At prefill (several positions) only the last one produces output; afterwards, with
        # the KV cache, each step holds the one new token.
        t = slice(None) if positions == "all" or h.shape[1] == 1 else slice(h.shape[1] - 1, None)
        new = h.clone()
        if rows is None:
            new[:, t] = op(h[:, t].float()).to(h.dtype)
        else:
            idx = torch.tensor([r for r in rows if r < h.shape[0]], dtype=torch.long, device=h.device)
            if idx.numel():
                new[idx, t] = op(h[idx, t].float()).to(h.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return fn


@contextlib.contextmanager
def hooks(model: nn.Module, data: SteeringData, spec: SteerSpec, target: str, *, rows: Sequence[int] | None = None,
          positions: str = "generated") -> Iterator[list[int]]:
    """Steer `model` towards `target` inside the block; yields the layers actually hooked.

    `rows` restricts steering to those rows of the batch (the Compare page's mixed batch);
    the hooks are removed on leaving the block, also when it raises."""
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}")
    target = varieties.code(target)
    modules = layer_modules(model)
    layers = list(spec.layers or data.layers)
    bad = [x for x in layers if x not in modules]
    if bad:
        raise UserError(f"layers {bad} do not exist; this model has layers 1..{len(modules)}")
    missing = [x for x in layers if x not in data.layers]
    if missing:
        raise UserError(f"the steering statistics ({data.origin}) cover layers {data.layers}, not {missing}")
    handles = []
    try:
        active = []
        for layer in layers:
            op = _operator(data, spec, layer, target)
            if op is not None:
                handles.append(modules[layer].register_forward_hook(_hook(op, rows, positions)))
                active.append(layer)
        yield active
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Steerer:
    """A steering request with its statistics: generates with hooks, one target at a time."""

    spec: SteerSpec
    data: SteeringData
    positions: str = "generated"

    @property
    def layers(self) -> list[int]:
        return list(self.spec.layers or self.data.layers)

    def hooks(self, model: nn.Module, target: str, rows: Sequence[int] | None = None):
        return hooks(model, self.data, self.spec, target, rows=rows, positions=self.positions)

    def generate(self, model: nn.Module, tokenizer: Any, prompts: list[str], targets: Sequence[str],
                 **gen: Any) -> list[str]:
        """Like backend.modeling.generate, with each prompt steered towards its target
        variety: prompts are grouped by target (the centre and the vector depend on it)."""
        if len(prompts) != len(targets):
            raise ValueError(f"{len(prompts)} prompts for {len(targets)} targets")
        out: list[str] = [""] * len(prompts)
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(targets):
            groups.setdefault(varieties.code(t), []).append(i)
        for target, idx in groups.items():
            with self.hooks(model, target):
                texts = generate(model, tokenizer, [prompts[i] for i in idx], **gen)
            for i, text in zip(idx, texts, strict=True):
                out[i] = text
        return out

    def describe(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "layers": self.layers, "positions": self.positions,
                "origin": self.data.origin, "rank": {str(x): self.data.rank(x) for x in self.layers},
                **({"cache": self.data.meta["cache"]} if self.data.meta.get("cache") else {})}


# --- estimating on a model, cached -------------------------------------------------------

def _file_stamp(path: Path) -> list[Any]:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def base_fingerprint(base: str) -> str:
    """A base's identity: its config.json's content and its weight files' names, sizes and
    modification times (rebuilding the base changes them; hashing gigabytes would not pay)."""
    folder = Path(resolve_base(base))
    h = hashlib.sha1()
    for name in ("config.json", "tokenizer.json"):
        if (folder / name).is_file():
            h.update((folder / name).read_bytes())
    for path in sorted(folder.glob("*.safetensors")):
        h.update(json.dumps(_file_stamp(path)).encode())
    return h.hexdigest()[:16]


def adapter_fingerprint(adapter_dir: Path | None) -> str | None:
    if adapter_dir is None:
        return None
    h = hashlib.sha1()
    for path in sorted(Path(adapter_dir).glob("*")):
        if path.is_file():
            h.update(json.dumps(_file_stamp(path)).encode())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    return paths.models_dir() / "steering"


@dataclass(frozen=True)
class EstimateSettings:
    """How an estimate is made; every field is part of the cache key."""

    per_variety: int = 64  # training pairs per dialect (MSA states come from the same pairs)
    rank: int = 8  # k_max of the probe
    updates: int = 30  # online probe updates, as in ~300 training steps at probe_every 10
    probe_steps: int = 20
    tokens_per_update: int = 512
    max_length: int = 96
    batch_size: int = 32
    seed: int = 0


def sample_pairs(corpus: Any, dialects: Sequence[str], per_variety: int, seed: int = 0) -> dict[str, list]:
    """MSA -> dialect pairs of the TRAIN split, `per_variety` per dialect, drawn with `seed`."""
    rng = random.Random(seed)
    out: dict[str, list] = {}
    for code in dialects:
        pairs = [p for p in corpus.pairs if p.split == "train" and p.target_variety == code
                 and p.source_variety == "MSA" and p.source.strip() and p.target.strip()]
        if len(pairs) > per_variety:
            pairs = rng.sample(pairs, per_variety)
        if pairs:
            out[code] = pairs
    return out


def _target_counts(tokenizer: Any, prompts: list[str], targets: list[str], max_length: int) -> list[int]:
    return [sum(1 for t in x["labels"] if t != IGNORE) for x in encode(tokenizer, prompts, targets, max_length)]


@torch.no_grad()
def estimate(model: nn.Module, tokenizer: Any, sample: dict[str, list], layers: Sequence[int], prompt_format: str,
             settings: EstimateSettings = EstimateSettings(), progress: Progress | None = None) -> SteeringData:
    """Every variety's mean target-token state and the MSA subspace of the project's probe,
    per layer, on `model` as it is (bare base or with its active adapter)."""
    say = progress or (lambda message: None)
    dialects = [d for d in sample if d != "MSA"]
    if not dialects:
        raise UserError("no MSA -> dialect training pairs to estimate steering statistics from")
    pairs = [p for d in dialects for p in sample[d]]
    prompter = Prompter(tokenizer, prompt_format)
    d_prompts = [prompter(p.source, "MSA", p.target_variety) for p in pairs]
    d_targets = [p.target for p in pairs]
    m_prompts = [prompter(p.target, p.target_variety, "MSA") for p in pairs]
    m_targets = [p.source for p in pairs]
    layers = list(layers)
    say(f"steering statistics: states of {len(pairs)} training pairs ({len(dialects)} dialects) at layers {layers}")
    kw = dict(batch_size=settings.batch_size, max_length=settings.max_length)
    d_states = collect_states(model, tokenizer, d_prompts, d_targets, layers, **kw)
    m_states = collect_states(model, tokenizer, m_prompts, m_targets, layers, **kw)
    index = {d: i + 1 for i, d in enumerate(dialects)}
    counts = _target_counts(tokenizer, d_prompts, d_targets, settings.max_length)
    d_y = torch.tensor([index[p.target_variety] for p, n in zip(pairs, counts) for _ in range(n)], dtype=torch.long)
    means: dict[int, dict[str, Tensor]] = {}
    for layer in layers:
        means[layer] = {"MSA": m_states[layer].float().mean(0)}
        for code, i in index.items():
            means[layer][code] = d_states[layer][d_y == i].float().mean(0)
    d = d_states[layers[0]].shape[1]
    est = MSASubspaceEstimator(layers, d, len(dialects) + 1, k_max=settings.rank, method="probe",
                               probe_steps=settings.probe_steps, seed=settings.seed)
    g = torch.Generator().manual_seed(settings.seed)
    n_m, n_d = m_states[layers[0]].shape[0], d_states[layers[0]].shape[0]
    k = settings.tokens_per_update
    for _ in range(settings.updates):
        mi = torch.randperm(n_m, generator=g)[:k]
        di = torch.randperm(n_d, generator=g)[:k]
        est.update({x: m_states[x][mi] for x in layers}, {x: d_states[x][di] for x in layers}, d_y[di])
    say("steering statistics: MSA subspace ranks " + ", ".join(f"L{x} {est.bases[x].shape[1]}" for x in layers))
    return SteeringData(layers, {x: est.bases[x].float() for x in layers}, means, "estimated",
                        {"dialects": dialects, "pairs": len(pairs)})


def _corpus_hash(sample: dict[str, list]) -> str:
    h = hashlib.sha1()
    for code, pairs in sample.items():
        for p in pairs:
            h.update(f"{code}\t{p.id}\t{p.source}\t{p.target}\n".encode())
    return h.hexdigest()[:16]


_MEMO: dict[str, SteeringData] = {}


def load_or_estimate(model: nn.Module, tokenizer: Any, *, base: str, adapter_dir: Path | None, corpus_spec: str,
                     dialects: Sequence[str], layers: Sequence[int], prompt_format: str,
                     settings: EstimateSettings = EstimateSettings(), corpus: Any = None,
                     progress: Progress | None = None) -> SteeringData:
    """The estimate for (base, adapter, corpus, layers, dialects, settings): read from the
    cache when its key matches, else made on `model` (which must hold that base and adapter,
    the adapter active) and saved."""
    say = progress or (lambda message: None)
    dialects = [d for d in varieties.parse_list(list(dialects)) if d != "MSA"]
    layers = sorted(set(int(x) for x in layers))
    base_fp, adapter_fp = base_fingerprint(base), adapter_fingerprint(adapter_dir)
    memo_key = json.dumps([base_fp, adapter_fp, corpus_spec, dialects, layers, prompt_format,
                           settings.__dict__], sort_keys=True)
    if corpus is None:
        corpus = load_corpus(corpus_spec)
    sample = sample_pairs(corpus, dialects, settings.per_variety, settings.seed)
    key = {"version": CACHE_VERSION, "base": base_fp, "adapter": adapter_fp, "corpus": corpus_spec,
           "corpus_hash": _corpus_hash(sample), "dialects": dialects, "layers": layers,
           "prompt_format": prompt_format, "settings": settings.__dict__}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    if memo_key in _MEMO and _MEMO[memo_key].meta.get("key") == digest:
        return _MEMO[memo_key]
    path = cache_dir() / f"{digest}.safetensors"
    who = f"{'base ' + str(base) if adapter_dir is None else 'adapter ' + Path(adapter_dir).parent.name}"
    origin = f"estimated on {who} from {len(dialects)} dialects of {corpus_spec} (train split)"
    if path.is_file():
        try:
            data = SteeringData.from_tensors(load_file(str(path)), layers, origin,
                                             {"key": digest, "cache": path.name, "cached": True})
            _MEMO[memo_key] = data
            say(f"steering statistics: cached ({path.name})")
            return data
        except Exception:  # noqa: BLE001 - a damaged cache file is re-estimated, not fatal
            path.unlink(missing_ok=True)
    data = estimate(model, tokenizer, sample, layers, prompt_format, settings, progress=say)
    data.origin = origin
    data.meta.update(key=digest, cache=path.name, cached=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(data.tensors(), tmp, metadata={"key": json.dumps(key, sort_keys=True)})
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _MEMO[memo_key] = data
    return data


def default_layers_for(model: nn.Module, run: Any = None) -> list[int]:
    """A run's probe layers, else the project's default middle-to-upper layers."""
    if run is not None:
        layers = run_layers(run)
        if layers:
            return layers
    return default_layers(n_layers(model))


def prepare(model: nn.Module, tokenizer: Any, spec: SteerSpec, *, base: str, run: Any = None,
            adapter_dir: Path | None = None, corpus_spec: str = "offline", dialects: Sequence[str] | None = None,
            prompt_format: str | None = None, subspace: str = "auto", settings: EstimateSettings = EstimateSettings(),
            corpus: Any = None, progress: Progress | None = None) -> Steerer:
    """A ready Steerer for `model` (base, or base + the active adapter `adapter_dir`).

    `subspace` for `project`: "run" (the run's saved subspace.safetensors), "estimate" (the
    probe on `model`, cached) or "auto" (the run's when there is a run). `vector` is always
    estimated on `model`. Layers default to the run's probe layers, else the default layers."""
    if subspace not in ("auto", "run", "estimate"):
        raise UserError(f"subspace must be auto, run or estimate, not {subspace!r}")
    layers = list(spec.layers) if spec.layers else default_layers_for(model, run)
    total = n_layers(model)
    bad = [x for x in layers if not 1 <= x <= total]
    if bad:
        raise UserError(f"layers {bad} do not exist; this model has layers 1..{total}")
    spec = spec.with_layers(layers)
    use_run = spec.method == "project" and subspace in ("auto", "run") and run is not None
    if subspace == "run" and run is None:
        raise UserError("--subspace run needs a run (an adapter given by run id)")
    if use_run:
        return Steerer(spec, from_run(run, layers))
    if run is not None:
        config = run.config()
        dialects = dialects or [d for d in varieties.parse_list(config.dialects) if d != "MSA"]
        prompt_format = prompt_format or config.prompt_format
    if not dialects:
        if corpus is None:
            corpus = load_corpus(corpus_spec)
        dialects = [v for v in corpus.target_varieties() if v not in ("MSA", "ENG")]
    data = load_or_estimate(model, tokenizer, base=base, adapter_dir=adapter_dir, corpus_spec=corpus_spec,
                            dialects=dialects, layers=layers, prompt_format=prompt_format or DEFAULT_FORMAT,
                            settings=settings, corpus=corpus, progress=progress)
    return Steerer(spec, data)


# --- the Compare page's fourth column ----------------------------------------------------

@dataclass
class RowSteer:
    """Steering of one row of the Compare page's mixed batch: which system, towards which target."""

    steerer: Steerer
    system: str  # base | baseline | decoupled
    target: str

    def hooks(self, model: nn.Module, rows: Sequence[int] | None = None):
        return self.steerer.hooks(model, self.target, rows=rows)


def for_pair(pm: Any, spec: SteerSpec, system: str, target: str, progress: Progress | None = None) -> RowSteer:
    """Steering of `system` (base, baseline or decoupled) of a loaded run pair (compare.PairModel).
    Estimating uses the pair's model with that system's adapter active, under the pair's lock."""
    if system not in ("base", "baseline", "decoupled"):
        raise UserError(f"steer base, baseline or decoupled, not {system!r}")
    run = None if system == "base" else getattr(pm.pair, system)
    config = pm.pair.config()
    model = pm.model
    with pm.lock:
        if system == "base":
            ctx: Any = model.disable_adapter()
        else:
            model.set_adapter(system, inference_mode=True)
            ctx = contextlib.nullcontext()
        with ctx:
            steerer = prepare(model, pm.tokenizer, spec, base=config.base, run=run,
                              adapter_dir=None if run is None else run.adapter_dir, corpus_spec=config.source,
                              dialects=[d for d in varieties.parse_list(config.dialects) if d != "MSA"],
                              prompt_format=config.prompt_format, progress=progress)
    return RowSteer(steerer, system, varieties.code(target))


__all__ = [
    "METHODS", "EstimateSettings", "RowSteer", "SteerSpec", "Steerer", "SteeringData", "adapter_fingerprint",
    "base_fingerprint", "estimate", "for_pair", "from_run", "hooks", "layer_modules", "load_or_estimate",
    "parse_layers", "prepare",
]
