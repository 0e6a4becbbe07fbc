"""Online variational probing of the MSA subspace, and the projection penalty.

This is the project's reading of arXiv 2508.12803 (see `../shared/docs/method.md`, sections
3 and 4). The choices the summary leaves open, made here and repeated in the README:

- **Probe.** Per layer, a Bayesian low-rank linear probe predicts the variety of a target
  token (MSA or one of the run's dialects) from its hidden state: logits = (z W) V + b,
  with z the state standardised by running statistics, W in R^{d x k_max} under a
  factorised Gaussian posterior q(W) = N(mu, sigma^2) and a N(0, 1) prior, V and b point
  estimates. It is trained on the reparameterised ELBO  E_q[log p(y | z, W)] - KL(q||p)/N
  for a few Adam steps at each update, warm-started from its last state (parameters *and*
  optimiser), which is what makes it online.
- **Subspace.** A column j of W whose posterior signal-to-noise ||mu_j|| / ||sigma_j|| stays
  above `snr_threshold` carries variety information; the KL term drives unused columns back
  to the prior (mu -> 0, sigma -> 1), so the rank is set by variational pruning. The kept
  columns, mapped back to the raw state space (divided by the standardising scale), are
  orthonormalised by SVD into U_l (rank <= k_max). The geometric variant ("pca") takes the
  top principal directions of an exponentially weighted covariance of MSA states; "both"
  takes the span of the two.
- **Centring.** m_l is a running mean *per variety*: a dialect token is centred on its own
  dialect's mean, so the penalty measures the within-dialect energy inside the MSA
  subspace. Centring on a pooled mean would instead pull every dialect towards the others
  and towards MSA along the very directions that tell them apart, the opposite of
  decoupling.
- **Penalty.** L_dec = mean over layers and dialect target tokens of
  ||U U^T (h - m)||^2 / ||h - m||^2, with U and m detached. The same quantity, measured on
  the probe's dialect batch without gradients, is the logged "overlap"; a random r-dim
  subspace of R^d would give r/d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.examples import collate, encode, target_mask
from backend.modeling.layers import run_to_layers, unwrap_parallel

LOG2 = math.log(2.0)


def default_layers(n_layers: int) -> list[int]:
    """Middle-to-upper layers (hidden_states indices 1..n): where variety identity is
    most linearly readable in small decoders, and below the final norm's output head."""
    if n_layers <= 2:
        return list(range(1, n_layers + 1))
    picks = {round(n_layers * f) for f in (0.5, 0.75)} | {n_layers - 1}
    return sorted(max(1, min(n_layers, p)) for p in picks)


class VariationalProbe(nn.Module):
    """Bayesian low-rank linear probe for one layer (see module docstring)."""

    def __init__(self, d: int, n_classes: int, k_max: int = 8, prior_std: float = 1.0,
                 lr: float = 3e-2, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.d, self.n_classes, self.k_max, self.prior_std = d, n_classes, k_max, prior_std
        self.mu = nn.Parameter(torch.randn(d, k_max, generator=g) / math.sqrt(d))
        self.log_sigma = nn.Parameter(torch.full((d, k_max), -3.0))
        self.V = nn.Parameter(torch.randn(k_max, n_classes, generator=g) / math.sqrt(k_max))
        self.b = nn.Parameter(torch.zeros(n_classes))
        self.register_buffer("shift", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("n_seen", torch.zeros((), dtype=torch.long))
        self.lr = lr
        self._opt: torch.optim.Optimizer | None = None
        self._gen = torch.Generator().manual_seed(seed + 1)

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    def _standardise(self, h: Tensor) -> Tensor:
        return (h.float() - self.shift) / self.scale

    def _update_stats(self, h: Tensor, momentum: float = 0.1) -> None:
        h = h.float()
        mean, std = h.mean(0), h.std(0).clamp_min(1e-4)
        if int(self.n_updates) == 0:
            self.shift.copy_(mean)
            self.scale.copy_(std)
        else:
            self.shift.lerp_(mean, momentum)
            self.scale.lerp_(std, momentum)

    def kl(self) -> Tensor:
        """KL(q(W) || N(0, prior_std^2)), summed over entries."""
        s2, p2 = self.sigma**2, self.prior_std**2
        return (math.log(self.prior_std) - self.log_sigma + (s2 + self.mu**2) / (2 * p2) - 0.5).sum()

    def logits(self, h: Tensor, sample: bool = False) -> Tensor:
        return self._logits_z(self._standardise(h), sample)

    def _logits_z(self, z: Tensor, sample: bool = False) -> Tensor:
        if sample:
            eps = torch.randn(self.mu.shape, generator=self._gen).to(self.mu.device)
            w = self.mu + self.sigma * eps
        else:
            w = self.mu
        return (z @ w) @ self.V + self.b

    def fit(self, h: Tensor, y: Tensor, steps: int = 20, lr: float | None = None) -> float:
        """A few ELBO steps, warm-started; returns the last negative ELBO per example."""
        h, y = h.detach().float().to(self.mu.device), y.to(self.mu.device)
        self._update_stats(h)
        self.n_seen += h.shape[0]
        if self._opt is None:
            self._opt = torch.optim.Adam(self.parameters(), lr=lr or self.lr)
        # Decaying step size: fast first estimates, then a steady online average.
        for group in self._opt.param_groups:
            group["lr"] = (lr or self.lr) * max(0.2, 1.0 / (1.0 + 0.2 * int(self.n_updates)))
        # The posterior summarises every example of the stream so far, so the KL is spread
        # over all of them: dividing by this batch alone lets the KL swamp the likelihood,
        # and the probe collapses to its prior (rank 0) after a few updates.
        n = max(1, int(self.n_seen))
        loss = torch.zeros(())
        z = self._standardise(h)  # fixed during the fit: standardised once
        with torch.enable_grad():
            for _ in range(steps):
                self._opt.zero_grad(set_to_none=True)
                nll = F.cross_entropy(self._logits_z(z, sample=True), y)
                loss = nll + self.kl() / n
                loss.backward()
                self._opt.step()
        self.n_updates += 1
        return float(loss.detach())

    def resume_state(self) -> dict[str, Tensor]:
        """The optimizer's moments and the sampling generator, as flat tensors: without
        them a resumed run restarts Adam from zero and its first probe updates jump."""
        out = {"gen": self._gen.get_state()}
        if self._opt is not None:
            for i, state in self._opt.state_dict()["state"].items():
                for key, t in state.items():
                    out[f"opt.{i}.{key}"] = torch.as_tensor(t).detach().cpu().contiguous()
        return out

    def load_resume_state(self, state: dict[str, Tensor]) -> None:
        if "gen" in state:
            self._gen.set_state(state["gen"])
        moments: dict[int, dict[str, Tensor]] = {}
        for name, t in state.items():
            if name.startswith("opt."):
                _, i, key = name.split(".", 2)
                moments.setdefault(int(i), {})[key] = t.clone()
        if moments:
            self._opt = torch.optim.Adam(self.parameters(), lr=self.lr)
            groups = self._opt.state_dict()["param_groups"]
            self._opt.load_state_dict({"state": moments, "param_groups": groups})

    @torch.no_grad()
    def accuracy(self, h: Tensor, y: Tensor) -> float:
        """MSA-vs-dialect accuracy (class 0 against the rest), the figure the method reports:
        telling the dialects apart from one another is not what the MSA subspace is about."""
        if h.shape[0] == 0:
            return float("nan")
        pred = self.logits(h.to(self.mu.device)).argmax(-1) == 0
        return float((pred == (y.to(self.mu.device) == 0)).float().mean())

    @torch.no_grad()
    def code_length_bits(self, h: Tensor, y: Tensor) -> dict:
        """Variational code length in bits: KL(q||p) (the model's cost) plus the expected
        NLL of the labels under q (the data's cost), estimated with the posterior mean.
        `per_class` is the mean NLL in bits per example of each class (0 = MSA)."""
        h, y = h.to(self.mu.device), y.to(self.mu.device)
        nll = F.cross_entropy(self.logits(h), y, reduction="none") / LOG2
        kl_bits = float(self.kl() / LOG2)
        per_class = {int(c): float(nll[y == c].mean()) for c in torch.unique(y)}
        return {"total": kl_bits + float(nll.sum()), "kl": kl_bits, "nll": float(nll.sum()),
                "per_example": (kl_bits + float(nll.sum())) / max(1, len(y)), "per_class": per_class}

    @torch.no_grad()
    def snr(self) -> Tensor:
        """Posterior signal-to-noise of each column of W along its own direction:
        ||mu_j|| over the posterior standard deviation of w_j projected on mu_j / ||mu_j||."""
        norm = self.mu.norm(dim=0).clamp_min(1e-12)
        unit = self.mu / norm
        return norm / (unit.pow(2) * self.sigma.pow(2)).sum(0).sqrt()

    @torch.no_grad()
    def subspace(self, snr_threshold: float = 5.0, k_max: int | None = None) -> Tensor:
        """Orthonormal basis (d x r) of the directions the probe relies on, in raw state space.

        Only the product W V is identified by the likelihood (and only up to a shift shared
        by all classes), so the directions are read off the effective weights of the kept
        columns, mu_kept V_kept (centred over classes), not off mu alone; the rank is the
        number of kept columns, capped by that matrix's numerical rank and k_max."""
        k_max = k_max or self.k_max
        keep = (self.snr() > snr_threshold).nonzero().flatten()
        if keep.numel() == 0:
            return torch.zeros(self.d, 0, device=self.mu.device)
        centre = torch.eye(self.n_classes, device=self.mu.device) - 1.0 / self.n_classes
        effective = (self.mu[:, keep] @ self.V[keep]) @ centre / self.scale[:, None]
        return orthonormalise(effective, min(k_max, int(keep.numel())))


_PARAMS = ("mu", "log_sigma", "V", "b")


def fit_probes(probes: list[VariationalProbe], hs: list[Tensor], y: Tensor, steps: int = 20) -> list[float]:
    """`probe.fit(h, y, steps)` for one probe per layer on the same labelled rows, as one
    batched computation. The layers' losses are separate terms of one sum and Adam works
    element by element, so every probe takes the steps its own `fit` would (the same noise
    draws from its own generator, the same moments, up to float rounding) for a third of
    the per-operation cost, which is what a probe update on small batches spends."""
    if len({(p.d, p.n_classes, p.k_max, int(p.n_updates), int(p.n_seen), p.prior_std, p.lr) for p in probes}) != 1:
        raise ValueError("fit_probes needs probes of one shape, updated together")
    first = probes[0]
    device = first.mu.device
    y = y.to(device)
    hs = [h.detach().float().to(device) for h in hs]
    for p, h in zip(probes, hs):
        p._update_stats(h)
        p.n_seen += h.shape[0]
    lr = first.lr * max(0.2, 1.0 / (1.0 + 0.2 * int(first.n_updates)))
    n = max(1, int(first.n_seen))  # the KL is spread over the whole stream, as in `fit`
    z = torch.stack([p._standardise(h) for p, h in zip(probes, hs)])  # L x N x d
    params = [torch.stack([getattr(p, name).detach() for p in probes]).requires_grad_() for name in _PARAMS]
    opt = torch.optim.Adam(params, lr=lr)
    if first._opt is not None:
        for stacked, name in zip(params, _PARAMS):
            states = [p._opt.state.get(getattr(p, name), {}) for p in probes]
            if states[0]:
                opt.state[stacked] = {"step": states[0]["step"].clone(),
                                      "exp_avg": torch.stack([s["exp_avg"] for s in states]),
                                      "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in states])}
    L, yy = len(probes), y.repeat(len(probes))
    log_prior, p2 = math.log(first.prior_std), first.prior_std**2
    per_layer = torch.zeros(L)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            mu, log_sigma, V, b = params
            eps = torch.stack([torch.randn(p.mu.shape, generator=p._gen) for p in probes]).to(device)
            sigma = log_sigma.exp()
            logits = torch.baddbmm(b[:, None, :], torch.bmm(z, mu + sigma * eps), V)
            nll = F.cross_entropy(logits.reshape(-1, first.n_classes), yy, reduction="none").view(L, -1).mean(1)
            kl = (log_prior - log_sigma + (sigma**2 + mu**2) / (2 * p2) - 0.5).sum((1, 2))
            per_layer = nll + kl / n
            per_layer.sum().backward()
            opt.step()
    with torch.no_grad():
        for i, p in enumerate(probes):
            for stacked, name in zip(params, _PARAMS):
                getattr(p, name).copy_(stacked[i])
            if p._opt is None:
                p._opt = torch.optim.Adam(p.parameters(), lr=lr)
            for group in p._opt.param_groups:
                group["lr"] = lr
            for stacked, name in zip(params, _PARAMS):
                st = opt.state[stacked]
                p._opt.state[getattr(p, name)] = {"step": st["step"].clone(), "exp_avg": st["exp_avg"][i].clone(),
                                                  "exp_avg_sq": st["exp_avg_sq"][i].clone()}
            p.n_updates += 1
    return [float(x) for x in per_layer.detach()]


def orthonormalise(directions: Tensor, k_max: int, rel_tol: float = 1e-3) -> Tensor:
    """Orthonormal basis of the columns' span (float32, or float64 if given float64), the
    project's one routine for it. SVD-based: drops near-collinear directions instead of
    amplifying noise like QR would."""
    if directions.shape[1] == 0:
        return directions
    x = directions if directions.dtype == torch.float64 else directions.float()
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    r = int((s > s[0] * rel_tol).sum()) if s.numel() else 0
    return u[:, : min(r, k_max)]


class OnlinePCA:
    """Top principal directions of MSA states from an exponentially weighted covariance."""

    def __init__(self, d: int, decay: float = 0.9) -> None:
        self.decay, self.mean, self.cov, self.n = decay, torch.zeros(d), torch.zeros(d, d), 0

    @torch.no_grad()
    def update(self, h: Tensor) -> None:
        h = h.detach().float().cpu()
        mean = h.mean(0)
        x = h - mean
        cov = x.T @ x / max(1, h.shape[0] - 1)
        a = 0.0 if self.n == 0 else self.decay
        self.mean = a * self.mean + (1 - a) * mean
        self.cov = a * self.cov + (1 - a) * cov
        self.n += 1

    def basis(self, k: int) -> Tensor:
        if self.n == 0:
            return torch.zeros(self.cov.shape[0], 0)
        evals, evecs = torch.linalg.eigh(self.cov)
        return evecs[:, torch.argsort(evals, descending=True)[:k]]


def overlap_energy(h: Tensor, U: Tensor, mean: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-row fraction of the centred energy that lies inside span(U): in [0, 1]."""
    x = h.float() - mean.float()
    if U.shape[1] == 0:
        return torch.zeros(x.shape[0], device=x.device)
    inside = (x @ U.to(x)).pow(2).sum(-1)
    return inside / (x.pow(2).sum(-1) + eps)


@dataclass
class ProbeReport:
    """What one probe update measured, per layer (layer index -> value)."""

    overlap: dict[int, float]
    accuracy: dict[int, float]
    code_bits_msa: dict[int, float]
    code_bits_dialect: dict[int, float]
    rank: dict[int, int]

    def as_record(self) -> dict:
        return {
            "overlap": {str(k): v for k, v in self.overlap.items()},
            "probe_acc": {str(k): v for k, v in self.accuracy.items()},
            "code_bits_msa": {str(k): v for k, v in self.code_bits_msa.items()},
            "code_bits_dialect": {str(k): v for k, v in self.code_bits_dialect.items()},
            "probe_rank": {str(k): v for k, v in self.rank.items()},
        }


class MSASubspaceEstimator:
    """Keeps, per layer, the probe, the running per-variety means and the current U_l.

    Varieties are class indices: 0 is MSA, 1..n the run's dialects.
    """

    def __init__(self, layers: list[int], d: int, n_classes: int, k_max: int = 8,
                 method: str = "probe", probe_steps: int = 20, snr_threshold: float = 5.0,
                 mean_momentum: float = 0.1, seed: int = 0) -> None:
        if method not in ("probe", "pca", "both"):
            raise ValueError(f"subspace method must be probe, pca or both, not {method!r}")
        self.layers, self.d, self.n_classes, self.k_max = list(layers), d, n_classes, k_max
        self.method, self.probe_steps, self.snr_threshold = method, probe_steps, snr_threshold
        self.mean_momentum = mean_momentum
        self.probes = {l: VariationalProbe(d, n_classes, k_max, seed=seed + l) for l in self.layers}
        self.pcas = {l: OnlinePCA(d) for l in self.layers}
        self.means = {l: torch.zeros(n_classes, d) for l in self.layers}
        self.seen = torch.zeros(n_classes, dtype=torch.bool)
        self.bases: dict[int, Tensor] = {l: torch.zeros(d, 0) for l in self.layers}

    @property
    def ready(self) -> bool:
        return any(U.shape[1] > 0 for U in self.bases.values())

    @torch.no_grad()
    def _update_means(self, layer: int, h: Tensor, y: Tensor) -> None:
        for c in torch.unique(y).tolist():
            m = h[y == c].float().mean(0).cpu()
            if self.seen[c]:
                self.means[layer][c].lerp_(m, self.mean_momentum)
            else:
                self.means[layer][c] = m

    def update(self, msa: dict[int, Tensor], dialect: dict[int, Tensor], dialect_y: Tensor) -> ProbeReport:
        """One online update from held-out MSA states and the current dialect batch's states."""
        report = ProbeReport({}, {}, {}, {}, {})
        dialect_y = dialect_y.cpu()
        hms = {l: msa[l].detach().float().cpu() for l in self.layers}
        hds = {l: dialect[l].detach().float().cpu() for l in self.layers}
        hs = {l: torch.cat([hms[l], hds[l]]) for l in self.layers}
        y = torch.cat([torch.zeros(len(hms[self.layers[0]]), dtype=torch.long), dialect_y])
        for l in self.layers:
            self._update_means(l, hs[l], y)
        fit_probes([self.probes[l] for l in self.layers], [hs[l] for l in self.layers], y, self.probe_steps)
        for l in self.layers:
            hm, hd, h, probe = hms[l], hds[l], hs[l], self.probes[l]
            if self.method != "probe":  # the covariance (d x d per layer) only serves "pca"/"both"
                self.pcas[l].update(hm)
            self.bases[l] = self._basis(l)
            code = probe.code_length_bits(h, y)
            nll_d = [v for c, v in code["per_class"].items() if c != 0]
            report.overlap[l] = float(overlap_energy(hd, self.bases[l], self.means[l][dialect_y]).mean())
            report.accuracy[l] = probe.accuracy(h, y)
            report.code_bits_msa[l] = code["per_class"].get(0, float("nan"))
            report.code_bits_dialect[l] = sum(nll_d) / len(nll_d) if nll_d else float("nan")
            report.rank[l] = int(self.bases[l].shape[1])
        self.seen[torch.unique(torch.cat([torch.zeros(1, dtype=torch.long), dialect_y]))] = True
        return report

    def _basis(self, l: int) -> Tensor:
        parts = []
        if self.method in ("probe", "both"):
            parts.append(self.probes[l].subspace(self.snr_threshold, self.k_max))
        if self.method in ("pca", "both"):
            parts.append(self.pcas[l].basis(self.k_max))
        return orthonormalise(torch.cat(parts, dim=1), self.k_max)

    def penalty(self, hidden: dict[int, Tensor], mask: Tensor, token_y: Tensor) -> Tensor:
        """L_dec on dialect target tokens: differentiable in `hidden`, U and m detached."""
        terms = []
        for l in self.layers:
            U = self.bases[l]
            if U.shape[1] == 0 or not mask.any():
                continue
            h = hidden[l][mask]
            m = self.means[l].to(h.device)[token_y[mask]]
            terms.append(overlap_energy(h, U.to(h.device), m).mean())
        if not terms:
            ref = next(iter(hidden.values()))
            return ref.new_zeros((), dtype=torch.float32)
        return torch.stack(terms).mean()

    def state_dict(self) -> dict[str, Tensor]:
        """Flat tensors only, so checkpoints go through safetensors."""
        out: dict[str, Tensor] = {"seen": self.seen.to(torch.uint8)}
        for l in self.layers:
            for name, t in self.probes[l].state_dict().items():
                out[f"probe.{l}.{name}"] = t.detach().cpu().contiguous()
            for name, t in self.probes[l].resume_state().items():
                out[f"resume.{l}.{name}"] = t
            out[f"means.{l}"] = self.means[l].contiguous()
            out[f"basis.{l}"] = self.bases[l].contiguous()
            out[f"pca.{l}.mean"], out[f"pca.{l}.cov"] = self.pcas[l].mean, self.pcas[l].cov
            out[f"pca.{l}.n"] = torch.tensor(self.pcas[l].n)
        return out

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.seen = state["seen"].bool()
        for l in self.layers:
            probe_state = {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"probe.{l}.")}
            self.probes[l].load_state_dict(probe_state)
            self.probes[l].load_resume_state({k.split(".", 2)[2]: v for k, v in state.items()
                                              if k.startswith(f"resume.{l}.")})
            self.means[l] = state[f"means.{l}"].clone()
            self.bases[l] = state[f"basis.{l}"].clone()
            self.pcas[l].mean, self.pcas[l].cov = state[f"pca.{l}.mean"], state[f"pca.{l}.cov"]
            self.pcas[l].n = int(state[f"pca.{l}.n"])


@torch.no_grad()
def collect_states(model: nn.Module, tokenizer, prompts: list[str], targets: list[str], layers: list[int],
                   batch_size: int = 32, max_length: int = 96, pool: bool = False,
                   items: list[dict] | None = None) -> dict[int, Tensor]:
    """Hidden states over target tokens (N_tokens x d per layer), or their mean per
    sentence (n_sentences x d) with `pool=True`, for parallel or held-out sentences.
    `items`: the same sentences already through `backend.examples.encode` (the probe
    encodes its held-out pool once, not at every update)."""
    # Past DDP: its forward broadcasts buffers, a collective that would wait for the other
    # processes, which do not run this forward when only the main one probes.
    model = unwrap_parallel(model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if items is None:
        items = encode(tokenizer, prompts, targets, max_length)
    # Batches of similar lengths (little padding to compute), results put back in order.
    order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
    parts: dict[int, list[Tensor]] = {l: [torch.zeros(0)] * len(items) for l in layers}
    try:
        for i in range(0, len(order), batch_size):
            idx = order[i: i + batch_size]
            batch = collate([items[j] for j in idx], tokenizer.pad_token_id)
            hs = run_to_layers(model, layers, input_ids=batch["input_ids"].to(device),
                               attention_mask=batch["attention_mask"].to(device), use_cache=False)
            mask = target_mask(batch["labels"]).to(device)
            counts = mask.sum(1).tolist()
            for l in layers:
                h = hs[l].float()
                if pool:
                    m = mask.unsqueeze(-1).float()
                    rows = ((h * m).sum(1) / m.sum(1).clamp_min(1)).cpu().unbind(0)
                else:
                    rows = h[mask].cpu().split(counts)
                for j, row in zip(idx, rows):
                    parts[l][j] = row
    finally:
        model.train(was_training)
    if not items:
        return {l: torch.zeros(0) for l in layers}
    return {l: torch.stack(v) if pool else torch.cat(v) for l, v in parts.items()}


def collect_sentence_states(model: nn.Module, tokenizer, prompts: list[str], targets: list[str],
                            layers: list[int], batch_size: int = 32, max_length: int = 96) -> dict[int, Tensor]:
    return collect_states(model, tokenizer, prompts, targets, layers, batch_size, max_length, pool=True)
