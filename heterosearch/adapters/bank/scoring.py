"""First-order value of a bank from base-model gradients (for the proxies; pure functions).

G_l = dL/dW0 of member site l, (d_out, d_in) (``proxies.state`` orientation, Conv1D transposed).
As in the per-site ``spectral`` proxy: the step dW_l = -eta P(G)_l, the gradient projected onto
the updates the bank can express at rank r (best subspace chosen), lowers the loss to first order
by eta * sum_l ||P(G)_l||_F^2, a sum of squared singular values or of eigenvalues. With a single member every variant would
reduce to the per-site value sum_{j<=r} sigma_j(G)^2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from heterosearch.adapters._members import member_grads, role_spectral
from heterosearch.adapters.bank.config import BankElement, BankSpace

UNDEFINED = {
    "grad_norm": "a shared tensor's init-time gradient norm is not comparable to per-site scores",
    "snip": "SNIP of a shared bank at init is not comparable to per-site scores",
    "synflow": "synflow is defined for per-site adapters only",
}


def _top(values: torch.Tensor, r: int) -> float:
    return float(values.sort(descending=True).values[:r].clamp_min(0).sum())


def bank_spectral(G_by_site: Mapping[str, torch.Tensor], element: BankElement) -> float:  # noqa: N803
    """First-order gain of the bank's best rank-r update; ``G_by_site`` keyed by site key (``"L3.v"``).

    - share_ab, tl5: one delta for all members, so the gain is that of a rank-r step on the
      summed gradient: sum of the top-r sigma_j(sum_l G_l)^2.
    - share_a: shared row space V (d_in x r), free B_l per layer: gain sum_l ||G_l V||_F^2, maximised
      by the top-r eigenvalues of sum_l G_l^T G_l.
    - share_b: shared column space, free A_l per layer: top-r eigenvalues of sum_l G_l G_l^T.
    - tl6: share_ab's value, a lower bound: u = v = 1 recovers share_ab, and the per-layer
      diagonal scalings (zero gradient at init, since B = 0) can only add to it.
    """
    Gs = [G.double() for G in member_grads(G_by_site, element)]  # noqa: N806
    if any(G.dim() != 2 for G in Gs):  # streaming scoring's singular values: kinds.score_space refuses banks there
        raise ValueError(f"{element.key}: a bank needs each member's full gradient, not its singular values")
    r = element.rank
    if element.variant == "share_a":
        return _top(torch.linalg.eigvalsh(sum(G.t() @ G for G in Gs)), r)
    if element.variant == "share_b":
        return _top(torch.linalg.eigvalsh(sum(G @ G.t() for G in Gs)), r)
    return _top(torch.linalg.svdvals(sum(Gs)) ** 2, r)


def score(model: Any, sites: Sequence[Any], batches: Sequence[Any], section: BankSpace,
          grads: dict[str, dict[str, torch.Tensor]], proxies: Sequence[str], seed: int, scale: Any = None) -> dict[str, Any]:
    """{"spectral": {role: {option label: value}}} from the base model's data gradients (``grads["data"]``)."""
    from heterosearch.adapters.bank.options import groups

    return role_spectral(groups(section, sites), bank_spectral, grads, proxies)
