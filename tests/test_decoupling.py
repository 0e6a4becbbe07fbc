"""The probe, the MSA-subspace estimator and the penalty on synthetic data with known answers."""

import torch
from safetensors.torch import load_file, save_file

from backend.decoupling import (
    MSASubspaceEstimator,
    VariationalProbe,
    default_layers,
    orthonormalise,
    overlap_energy,
)


def largest_principal_angle(A: torch.Tensor, B: torch.Tensor) -> float:
    s = torch.linalg.svdvals(orthonormalise(A, A.shape[1]).T @ orthonormalise(B, B.shape[1])).clamp(max=1.0)
    return float(torch.rad2deg(torch.acos(s.min())))


def planted(n: int, d: int, k: int, seed: int, separation: float = 3.0):
    """k+1 Gaussian classes whose means differ only inside a random k-dim subspace P."""
    g = torch.Generator().manual_seed(seed)
    P, _ = torch.linalg.qr(torch.randn(d, k, generator=g))
    c = k + 1
    simplex = torch.eye(c) - 1.0 / c
    centres = simplex @ torch.linalg.svd(simplex)[0][:, :k] * separation
    y = torch.randint(0, c, (n,), generator=g)
    h = torch.randn(n, d, generator=g) + centres[y] @ P.T
    return h * 2.5 + torch.randn(d, generator=g) * 4, y, P


def test_probe_recovers_a_planted_subspace_with_its_rank():
    h, y, P = planted(n=10_000, d=32, k=3, seed=0)
    probe = VariationalProbe(d=32, n_classes=4, k_max=8, seed=0)
    for _ in range(30):
        probe.fit(h, y, steps=20)
    U = probe.subspace()
    assert U.shape[1] == 3  # variational pruning set the rank: 8 columns offered, 3 kept
    assert largest_principal_angle(U, P) < 10.0
    assert probe.accuracy(h, y) > 0.8


def test_an_unused_probe_prunes_to_rank_zero_on_label_noise():
    g = torch.Generator().manual_seed(1)
    probe = VariationalProbe(d=16, n_classes=2, k_max=4)
    for _ in range(30):  # a fresh batch each update, as in training: the KL is spread over all seen
        h, y = torch.randn(200, 16, generator=g), torch.randint(0, 2, (200,), generator=g)
        probe.fit(h, y, steps=20)
    assert probe.subspace().shape[1] == 0


def test_code_length_is_shorter_when_labels_are_predictable():
    h, y, _ = planted(n=2000, d=16, k=2, seed=2)
    probe = VariationalProbe(d=16, n_classes=3, k_max=4)
    for _ in range(10):
        probe.fit(h, y, steps=20)
    real = probe.code_length_bits(h, y)
    shuffled = probe.code_length_bits(h, y[torch.randperm(len(y))])
    assert real["nll"] < 0.5 * shuffled["nll"]
    assert real["total"] == real["kl"] + real["nll"]


def test_overlap_energy_is_one_inside_and_zero_outside_the_subspace():
    U = torch.eye(6)[:, :2]
    inside = torch.zeros(5, 6)
    inside[:, :2] = torch.randn(5, 2)
    outside = torch.zeros(5, 6)
    outside[:, 2:] = torch.randn(5, 4)
    zero = torch.zeros(6)
    assert torch.allclose(overlap_energy(inside, U, zero), torch.ones(5), atol=1e-5)
    assert torch.allclose(overlap_energy(outside, U, zero), torch.zeros(5), atol=1e-6)
    assert overlap_energy(outside, torch.zeros(6, 0), zero).sum() == 0


def test_penalty_gradient_moves_dialect_states_out_of_the_msa_subspace():
    g = torch.Generator().manual_seed(3)
    d, layers = 12, [1, 2]
    est = MSASubspaceEstimator(layers, d=d, n_classes=2, k_max=2)
    msa = {layer: torch.randn(200, d, generator=g) + 3 * torch.eye(d)[0] for layer in layers}
    dia = {layer: torch.randn(200, d, generator=g) - 3 * torch.eye(d)[0] for layer in layers}
    y = torch.ones(200, dtype=torch.long)
    for _ in range(10):
        report = est.update(msa, dia, y)
    assert all(r >= 1 for r in report.rank.values())
    # A batch of dialect "hidden states" with a mask and per-token variety ids.
    hidden = {layer: (torch.randn(4, 10, d, generator=g) * (1 + 3 * torch.eye(d)[0])).requires_grad_() for layer in layers}
    mask, token_y = torch.ones(4, 10, dtype=torch.bool), torch.ones(4, 10, dtype=torch.long)
    before = float(est.penalty(hidden, mask, token_y).detach())
    opt = torch.optim.Adam(list(hidden.values()), lr=0.1)
    for _ in range(50):
        opt.zero_grad()
        est.penalty(hidden, mask, token_y).backward()
        opt.step()
    after = float(est.penalty(hidden, mask, token_y).detach())
    assert after < 0.5 * before


def test_estimator_state_round_trips_through_safetensors(tmp_path):
    g = torch.Generator().manual_seed(4)
    est = MSASubspaceEstimator([2, 3], d=8, n_classes=3, k_max=3, method="both")
    msa = {l: torch.randn(50, 8, generator=g) + 2 for l in (2, 3)}
    dia = {l: torch.randn(60, 8, generator=g) for l in (2, 3)}
    est.update(msa, dia, torch.randint(1, 3, (60,), generator=g))
    save_file(est.state_dict(), str(tmp_path / "s.safetensors"))
    other = MSASubspaceEstimator([2, 3], d=8, n_classes=3, k_max=3, method="both")
    other.load_state_dict(load_file(str(tmp_path / "s.safetensors")))
    for l in (2, 3):
        assert torch.equal(other.bases[l], est.bases[l])
        assert torch.equal(other.probes[l].mu, est.probes[l].mu)
        assert torch.equal(other.means[l], est.means[l])


def test_a_resumed_estimator_continues_exactly_as_the_uninterrupted_one(tmp_path):
    """Checkpoint, reload into a fresh estimator, update both on the same batch: the same
    probe and subspace, because Adam's moments and the sampling generator are restored too."""
    g = torch.Generator().manual_seed(5)
    batches = [({l: torch.randn(40, 8, generator=g) + 1 for l in (2, 3)},
                {l: torch.randn(40, 8, generator=g) for l in (2, 3)}, torch.randint(1, 3, (40,), generator=g))
               for _ in range(3)]
    est = MSASubspaceEstimator([2, 3], d=8, n_classes=3, k_max=3)
    for b in batches[:2]:
        est.update(*b)
    save_file(est.state_dict(), str(tmp_path / "s.safetensors"))
    resumed = MSASubspaceEstimator([2, 3], d=8, n_classes=3, k_max=3)
    resumed.load_state_dict(load_file(str(tmp_path / "s.safetensors")))
    est.update(*batches[2])
    resumed.update(*batches[2])
    for l in (2, 3):
        assert torch.allclose(resumed.probes[l].mu, est.probes[l].mu, atol=1e-6)
        assert torch.allclose(resumed.bases[l], est.bases[l], atol=1e-5)


def test_default_layers_are_middle_to_upper_and_valid():
    for n in (1, 2, 4, 6, 12, 32):
        layers = default_layers(n)
        assert layers and all(1 <= l <= n for l in layers)
        assert min(layers) >= n // 2 or n <= 2


def test_probe_keeps_its_subspace_over_a_stream_of_small_batches():
    # Regression: with the KL divided by the batch size alone, the KL outweighed the
    # likelihood and the probe collapsed to its prior (rank 0) after a few updates.
    h, y, P = planted(n=9_000, d=128, k=3, seed=2, separation=1.0)
    probe = VariationalProbe(d=128, n_classes=4, k_max=8, seed=0)
    ranks = []
    for i in range(30):
        probe.fit(h[i * 300:(i + 1) * 300], y[i * 300:(i + 1) * 300], steps=20)
        ranks.append(probe.subspace().shape[1])
    assert min(ranks) == 3
    assert largest_principal_angle(probe.subspace(), P) < 30.0


def test_probes_fitted_together_end_where_each_would_alone():
    """The estimator fits its layers' probes as one batched computation (a third of the
    per-operation cost); over warm-started updates each probe must still take its own steps:
    same parameters, same Adam moments and step size, same noise draws."""
    from backend.decoupling import fit_probes

    g = torch.Generator().manual_seed(6)
    alone = [VariationalProbe(16, 4, 5, seed=s) for s in (0, 1, 2)]
    together = [VariationalProbe(16, 4, 5, seed=s) for s in (0, 1, 2)]
    for _ in range(3):
        hs = [torch.randn(70, 16, generator=g) * (1 + i) + i for i in range(3)]
        y = torch.randint(0, 4, (70,), generator=g)
        for probe, h in zip(alone, hs):
            probe.fit(h, y, steps=7)
        fit_probes(together, hs, y, steps=7)
    for a, b in zip(alone, together):
        for name in ("mu", "log_sigma", "V", "b", "shift", "scale", "n_seen", "n_updates"):
            assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-5), name
        sa, sb = a._opt.state_dict(), b._opt.state_dict()
        assert sa["param_groups"][0]["lr"] == sb["param_groups"][0]["lr"]
        for i in range(4):
            assert torch.equal(sa["state"][i]["step"], sb["state"][i]["step"])
            assert torch.allclose(sa["state"][i]["exp_avg_sq"], sb["state"][i]["exp_avg_sq"], rtol=1e-4, atol=1e-9)
        assert torch.equal(a._gen.get_state(), b._gen.get_state())


def test_one_orthonormalisation_for_subspaces_drops_repeated_directions():
    """Principal angles go through the same SVD routine as the MSA subspace: a repeated
    column adds no direction (QR used to invent one, and with it a spurious 0-degree angle)."""
    from backend.evaluation.entanglement import principal_angles

    eye = torch.eye(6, dtype=torch.float64)
    repeated = torch.stack([eye[:, 0], eye[:, 0]], dim=1)
    assert orthonormalise(repeated, 2).shape == (6, 1)
    assert orthonormalise(repeated, 2).dtype == torch.float64
    angles = principal_angles(repeated, eye[:, :2])
    assert angles.shape == (1,) and float(angles[0]) < 1e-3
