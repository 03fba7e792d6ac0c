"""NT-Xent against a naive double loop written from SimCLR's Algorithm 1 (arXiv 2002.05709)."""

from __future__ import annotations

import math

import pytest
import torch

from thanosql_kernel.models.loss import NTXentLoss, multi_view_nt_xent_loss, nt_xent_loss


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Algorithm 1 verbatim: views 2k-1 and 2k are image k's; s_ij is cosine similarity;
    l(i, j) = -log exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau); L = mean over both orders."""
    n = z1.shape[0]
    z = []
    for k in range(n):
        z += [z1[k].double().tolist(), z2[k].double().tolist()]

    def cos(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))

    s = [[cos(z[i], z[j]) for j in range(2 * n)] for i in range(2 * n)]

    def ell(i: int, j: int) -> float:
        denom = sum(math.exp(s[i][k] / tau) for k in range(2 * n) if k != i)
        return -math.log(math.exp(s[i][j] / tau) / denom)

    total = 0.0
    for k in range(n):
        total += ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k)
    return total / (2 * n)


@pytest.mark.parametrize("n,d,tau,seed", [(2, 3, 0.5, 0), (5, 8, 0.1, 1), (8, 4, 1.0, 2),
                                          (3, 16, 0.07, 3), (16, 2, 2.0, 4)])
def test_loss_matches_paper_algorithm(n: int, d: int, tau: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g) * 3
    z2 = torch.randn(n, d, generator=g)
    got = nt_xent_loss(z1.double(), z2.double(), tau).item()
    assert got == pytest.approx(naive_nt_xent(z1, z2, tau), rel=1e-9, abs=1e-9)
    assert NTXentLoss(tau)(z1, z2).item() == pytest.approx(got, rel=1e-5)


def test_loss_is_low_for_matching_views_and_high_for_swapped() -> None:
    z = torch.eye(6)[:, :6] * 5
    good = nt_xent_loss(z, z, 0.1).item()
    bad = nt_xent_loss(z, z.roll(1, 0), 0.1).item()
    assert good < 0.01 < 5 < bad


def test_loss_is_scale_invariant_and_differentiable() -> None:
    g = torch.Generator().manual_seed(7)
    z1 = torch.randn(4, 5, generator=g, requires_grad=True)
    z2 = torch.randn(4, 5, generator=g)
    loss = nt_xent_loss(z1, z2, 0.5)
    loss.backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all()
    assert nt_xent_loss(z1 * 10, z2, 0.5).item() == pytest.approx(loss.item(), rel=1e-5)


def test_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        nt_xent_loss(torch.zeros(3, 4), torch.zeros(2, 4), 0.5)


def naive_multi_view(z: torch.Tensor, views: int, tau: float) -> float:
    """Multi-positive NT-Xent by loops: for every view a and every other view p of the same
    image, -log(exp(sim(a, p) / tau) / sum over all k != a of exp(sim(a, k) / tau))."""
    rows = [[float(v) for v in r] for r in z]
    m = len(rows)
    n = m // views

    def cos(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    total, count = 0.0, 0
    for a in range(m):
        denom = sum(math.exp(cos(rows[a], rows[k]) / tau) for k in range(m) if k != a)
        for p in range(m):
            if p != a and p % n == a % n:
                total += -math.log(math.exp(cos(rows[a], rows[p]) / tau) / denom)
                count += 1
    return total / count


@pytest.mark.parametrize("views,n,seed", [(2, 5, 0), (3, 4, 1), (8, 3, 2)])
def test_multi_view_loss_matches_loops(views: int, n: int, seed: int) -> None:
    z = torch.randn(views * n, 6, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    assert multi_view_nt_xent_loss(z, views, 0.3).item() == pytest.approx(
        naive_multi_view(z, views, 0.3), rel=1e-9)


def test_two_views_is_exactly_nt_xent() -> None:
    z = torch.randn(12, 5, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(multi_view_nt_xent_loss(z, 2, 0.2), nt_xent_loss(z[:6], z[6:], 0.2))


def test_multi_view_loss_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        multi_view_nt_xent_loss(torch.randn(7, 4), 2, 0.5)
    with pytest.raises(ValueError):
        multi_view_nt_xent_loss(torch.randn(8, 4), 1, 0.5)
