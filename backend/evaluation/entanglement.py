"""How entangled dialect representations are with MSA, per layer, measured after training.

Measured on held-out parallel pairs (MSA source, dialect target of the same sentence) for
three systems: the base model, the baseline adapter and the decoupled adapter. Hidden states
are taken over TARGET tokens exactly as training does (`backend.decoupling.collect_states`):
a dialect state is the state of a dialect sentence generated from its MSA source
(`<MSA> msa <CAI> dialect`), an MSA state the state of the MSA sentence generated from its
dialect side (`<CAI> dialect <MSA> msa`), as the online probe sees MSA during training.

Per layer:

- `energy_probe`: mean fraction of a dialect state's energy (centred on its own dialect's
  mean, as the penalty does) inside the MSA subspace read off a *fresh* VariationalProbe
  (MSA + the dialects as classes) fitted on half the sentences; measured on the other half.
  `energy_pca`: the same inside the top-k principal directions of the MSA states.
  `energy_random` = r/d is what a random r-dimensional subspace would hold.
- `probe_accuracy` (held-out half) and `code_bits_per_token` (the probe's variational code
  length KL + NLL on the half it was fitted on, divided by its token count): how readable
  "MSA or which dialect" is.
- `principal_angles`: between the top-k PCA subspaces of dialect and of MSA token states,
  in degrees (0 = the same directions, 90 = orthogonal); `mean_angle` summarises them.
- `cka`: linear CKA (Kornblith et al. 2019) between the parallel MSA and dialect sentence
  states (mean over target tokens): 1 means the two varieties are encoded alike up to a
  rotation and scale.

Plus a 2-D picture for the Overlap page: a PCA fitted on the base model's sentence states
(MSA and dialect together) at one layer, and every system's sentences projected onto it, so
the three panels share axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from backend.decoupling import (
    VariationalProbe,
    collect_sentence_states,
    collect_states,
    default_layers,
    orthonormalise,
    overlap_energy,
)
from backend.examples import IGNORE, encode
from backend.modeling import load_adapter, load_base
from backend.prompts import Prompter

Progress = Callable[[str], None]


# --- geometry on plain tensors --------------------------------------------------------

def pca_basis(X: Tensor, k: int) -> Tensor:
    """Top-k principal directions (d x k) of the rows of X, centred."""
    X = X.double()
    X = X - X.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(X, full_matrices=False)
    return vh[: min(k, vh.shape[0])].T.contiguous()


def principal_angles(A: Tensor, B: Tensor) -> Tensor:
    """Principal angles in degrees between span(A) and span(B), smallest first.

    Björck & Golub: the singular values of Qa^T Qb are the cosines of the angles."""
    qa, qb = orthonormalise(A.double(), A.shape[1]), orthonormalise(B.double(), B.shape[1])
    s = torch.linalg.svdvals(qa.T @ qb).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(s)).float()


def linear_cka(X: Tensor, Y: Tensor) -> float:
    """Linear CKA between two representations of the same n examples (rows)."""
    if X.shape[0] != Y.shape[0]:
        raise ValueError("CKA needs the same examples (rows) in both representations")
    X = X.double() - X.double().mean(0, keepdim=True)
    Y = Y.double() - Y.double().mean(0, keepdim=True)
    cross = (Y.T @ X).pow(2).sum()
    denom = (X.T @ X).norm() * (Y.T @ Y).norm()
    return float(cross / denom) if denom > 0 else float("nan")


def centred_energy(h: Tensor, U: Tensor, mean: Tensor) -> float:
    """Mean fraction of centred energy inside span(U) (the penalty's own quantity)."""
    if h.shape[0] == 0:
        return float("nan")
    return float(overlap_energy(h.float(), U.float(), mean.float()).mean())


# --- one layer ------------------------------------------------------------------------

def layer_entanglement(msa: Tensor, dialect: Tensor, dialect_y: Tensor, msa_fit: Tensor, dialect_fit: Tensor,
                       dialect_fit_y: Tensor, msa_sent: Tensor, dialect_sent: Tensor, n_classes: int,
                       k: int = 8, probe_steps: int = 300, seed: int = 0) -> dict:
    """All per-layer figures. Token states come in a fit half and a held-out half;
    `dialect_y` are class indices 1..n (0 is MSA)."""
    d = msa.shape[1]
    probe = VariationalProbe(d, n_classes, k_max=k, seed=seed)
    h_fit = torch.cat([msa_fit, dialect_fit]).float()
    y_fit = torch.cat([torch.zeros(len(msa_fit), dtype=torch.long), dialect_fit_y])
    probe.fit(h_fit, y_fit, steps=probe_steps)
    h_out = torch.cat([msa, dialect]).float()
    y_out = torch.cat([torch.zeros(len(msa), dtype=torch.long), dialect_y])
    code = probe.code_length_bits(h_fit, y_fit)
    U_probe = probe.subspace()
    U_pca = pca_basis(torch.cat([msa_fit, msa]), k).float()
    means = torch.zeros(n_classes, d)
    for c in torch.unique(dialect_y).tolist():
        means[c] = dialect[dialect_y == c].float().mean(0)
    centre = means[dialect_y]
    angles = principal_angles(pca_basis(torch.cat([dialect_fit, dialect]), k), U_pca)
    r = int(U_probe.shape[1])
    return {
        "energy_probe": centred_energy(dialect, U_probe, centre) if r else 0.0,
        "energy_pca": centred_energy(dialect, U_pca, centre),
        "energy_random": r / d,  # what a random subspace of the probe's rank would hold
        "energy_random_pca": U_pca.shape[1] / d,
        "probe_rank": r,
        "probe_accuracy": probe.accuracy(h_out, y_out),
        "code_bits_per_token": code["per_example"],
        "code_bits_total": code["total"],
        "principal_angles": [round(float(a), 3) for a in angles],
        "mean_angle": float(angles.mean()) if angles.numel() else float("nan"),
        "cka": linear_cka(msa_sent, dialect_sent),
        "tokens": {"msa": int(len(msa) + len(msa_fit)), "dialect": int(len(dialect) + len(dialect_fit))},
    }


# --- a model on held-out pairs ---------------------------------------------------------

def parallel_prompts(pairs: Sequence, template: str, tokenizer: Any = None) -> dict[str, list]:
    """Prompts (the run's `prompt_format`, see backend.prompts) and targets for both directions
    of MSA -> dialect pairs."""
    use = [p for p in pairs if p.source_variety == "MSA" and p.target_variety != "MSA"]
    prompter = Prompter(tokenizer, template)
    return {
        "pairs": use,
        "dialect_prompts": [prompter(p.source, "MSA", p.target_variety) for p in use],
        "dialect_targets": [p.target for p in use],
        "msa_prompts": [prompter(p.target, p.target_variety, "MSA") for p in use],
        "msa_targets": [p.source for p in use],
    }


def _token_labels(tokenizer, prompts: list[str], targets: list[str], classes: list[int], max_length: int) -> Tensor:
    lengths = [sum(1 for t in x["labels"] if t != IGNORE) for x in encode(tokenizer, prompts, targets, max_length)]
    return torch.tensor([c for c, n in zip(classes, lengths) for _ in range(n)], dtype=torch.long)


def _token_split(tokenizer, prompts, targets, max_length, fit_rows: set[int]) -> Tensor:
    """Boolean mask over target tokens: True for tokens of sentences in the fit half."""
    flags = []
    for i, x in enumerate(encode(tokenizer, prompts, targets, max_length)):
        n = sum(1 for t in x["labels"] if t != IGNORE)
        flags.extend([i in fit_rows] * n)
    return torch.tensor(flags, dtype=torch.bool)


@torch.no_grad()
def model_entanglement(model, tokenizer, pairs: Sequence, layers: list[int], dialects: list[str],
                       template: str, k: int = 8, max_length: int = 96, batch_size: int = 32,
                       probe_steps: int = 300, seed: int = 0) -> tuple[dict, dict[int, tuple[Tensor, Tensor]]]:
    """Per-layer figures for one model, and its sentence states per layer (MSA, dialect)."""
    data = parallel_prompts(pairs, template, tokenizer)
    use = data["pairs"]
    if len(use) < 4:
        raise ValueError(f"need at least 4 held-out MSA -> dialect pairs, got {len(use)}")
    index = {d: i + 1 for i, d in enumerate(dialects)}
    classes = [index[p.target_variety] for p in use]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(use), generator=g).tolist()
    fit_rows = set(perm[: len(use) // 2])

    dp, dt, mp, mt = data["dialect_prompts"], data["dialect_targets"], data["msa_prompts"], data["msa_targets"]
    d_tok = collect_states(model, tokenizer, dp, dt, layers, batch_size=batch_size, max_length=max_length)
    m_tok = collect_states(model, tokenizer, mp, mt, layers, batch_size=batch_size, max_length=max_length)
    d_sent = collect_sentence_states(model, tokenizer, dp, dt, layers, batch_size=batch_size, max_length=max_length)
    m_sent = collect_sentence_states(model, tokenizer, mp, mt, layers, batch_size=batch_size, max_length=max_length)
    d_y = _token_labels(tokenizer, dp, dt, classes, max_length)
    d_fit = _token_split(tokenizer, dp, dt, max_length, fit_rows)
    m_fit = _token_split(tokenizer, mp, mt, max_length, fit_rows)
    out = {}
    for layer in layers:
        out[str(layer)] = layer_entanglement(
            msa=m_tok[layer][~m_fit], dialect=d_tok[layer][~d_fit], dialect_y=d_y[~d_fit],
            msa_fit=m_tok[layer][m_fit], dialect_fit=d_tok[layer][d_fit], dialect_fit_y=d_y[d_fit],
            msa_sent=m_sent[layer], dialect_sent=d_sent[layer], n_classes=len(dialects) + 1,
            k=k, probe_steps=probe_steps, seed=seed,
        )
    return out, {layer: (m_sent[layer], d_sent[layer]) for layer in layers}


def projection_2d(reference: tuple[Tensor, Tensor], systems: dict[str, tuple[Tensor, Tensor]],
                  pairs: Sequence) -> dict:
    """PCA fitted on the reference (base) system's MSA + dialect sentence states; every
    system's states projected onto its two axes."""
    ref = torch.cat(list(reference)).double()
    mean = ref.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(ref - mean, full_matrices=False)
    axes = vh[:2].T
    var = (s**2) / (s**2).sum() if s.numel() else s
    points = []
    for name, (msa, dialect) in systems.items():
        for kind, states in (("MSA", msa), ("dialect", dialect)):
            xy = (states.double() - mean) @ axes
            for i, p in enumerate(pairs):
                points.append({"system": name, "kind": kind, "variety": "MSA" if kind == "MSA" else p.target_variety,
                               "pair_id": p.id, "x": round(float(xy[i, 0]), 4),
                               "y": round(float(xy[i, 1]) if xy.shape[1] > 1 else 0.0, 4)})
    return {"explained_variance": [round(float(v), 4) for v in var[:2]], "points": points}


def summarise(per_layer: dict) -> dict:
    """Means over layers of the scalar figures (for tables and the sweep summary)."""
    keys = ("energy_probe", "energy_pca", "energy_random", "probe_accuracy", "code_bits_per_token",
            "mean_angle", "cka")
    out = {}
    for key in keys:
        vals = [v[key] for v in per_layer.values() if v.get(key) is not None and not math.isnan(v[key])]
        out[key] = sum(vals) / len(vals) if vals else None
    return out


def entanglement_report(base: str, adapters: dict[str, object], pairs: Sequence, dialects: list[str],
                        template: str, layers: list[int] | None = None, k: int = 8, max_length: int = 96,
                        probe_steps: int = 300, projection_layer: int | None = None, seed: int = 0,
                        progress: Progress | None = None) -> dict:
    """Entanglement of the base model and of each adapter (name -> adapter folder) on the
    same held-out pairs and layers. Returns per-system per-layer figures, their means over
    layers, and the shared 2-D projection."""
    say = progress or (lambda message: None)
    model, tokenizer = load_base(base)
    n_layers = model.config.num_hidden_layers
    layers = list(layers) if layers else default_layers(n_layers)
    projection_layer = projection_layer or layers[-1]
    if projection_layer not in layers:
        layers = sorted({*layers, projection_layer})
    systems: dict[str, dict] = {}
    sentence_states: dict[str, tuple[Tensor, Tensor]] = {}

    def measure(name: str, m) -> None:
        say(f"entanglement: {name}")
        per_layer, sent = model_entanglement(m, tokenizer, pairs, layers, dialects, template, k=k,
                                             max_length=max_length, probe_steps=probe_steps, seed=seed)
        systems[name] = {"layers": per_layer, "mean": summarise(per_layer)}
        sentence_states[name] = sent[projection_layer]

    measure("base", model)
    peft_model = None
    for name, adapter_dir in adapters.items():
        peft_model = load_adapter(peft_model or model, adapter_dir, name)
        measure(name, peft_model)
    used = parallel_prompts(pairs, template, tokenizer)["pairs"]
    return {
        "layers": layers, "k": k, "n_pairs": len(used), "dialects": dialects,
        "systems": systems,
        "projection": {"layer": projection_layer, **projection_2d(sentence_states["base"], sentence_states, used)},
    }
