"""Geometry of the entanglement measures on synthetic data with known answers."""

from __future__ import annotations

import pytest
import torch

from backend.evaluation.entanglement import linear_cka, pca_basis, principal_angles, projection_2d


def test_identical_subspaces_have_zero_angles():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(32, 4, generator=g)
    B = A @ torch.randn(4, 4, generator=g)  # same span, another basis
    assert principal_angles(A, B).max().item() == pytest.approx(0.0, abs=1e-2)


def test_orthogonal_planted_subspaces_have_ninety_degree_angles():
    eye = torch.eye(16)
    angles = principal_angles(eye[:, :3], eye[:, 5:8])
    assert angles.min().item() == pytest.approx(90.0, abs=1e-3)


def test_one_shared_direction():
    eye = torch.eye(10)
    angles = principal_angles(eye[:, [0, 1]], eye[:, [0, 2]])
    assert angles[0].item() == pytest.approx(0.0, abs=1e-3) and angles[1].item() == pytest.approx(90.0, abs=1e-3)


def test_pca_recovers_planted_subspace():
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(20, 2, generator=g))[0]
    X = torch.randn(500, 2, generator=g) * 10 @ basis.T + 0.01 * torch.randn(500, 20, generator=g)
    assert principal_angles(pca_basis(X, 2), basis).max().item() < 1.0


def test_cka_known_values():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(200, 12, generator=g)
    assert linear_cka(X, X) == pytest.approx(1.0)
    Q = torch.linalg.qr(torch.randn(12, 12, generator=g))[0]
    assert linear_cka(X, 3.0 * X @ Q + 5.0) == pytest.approx(1.0, abs=1e-6)  # rotation, scale, shift
    Y = torch.randn(200, 12, generator=g)
    assert linear_cka(X, Y) < 0.2


def test_projection_shares_axes():
    from backend.data.corpus import Pair

    g = torch.Generator().manual_seed(3)
    pairs = [Pair(str(i), "s", "MSA", "t", "CAI", "test") for i in range(5)]
    base = (torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g))
    out = projection_2d(base, {"base": base, "other": (base[0] + 1, base[1])}, pairs)
    assert len(out["points"]) == 20
    b = [p for p in out["points"] if p["system"] == "base" and p["kind"] == "dialect"]
    o = [p for p in out["points"] if p["system"] == "other" and p["kind"] == "dialect"]
    assert [p["x"] for p in b] == [p["x"] for p in o]  # same states -> same points
