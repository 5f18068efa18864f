"""First-order value of a bank from base-model gradients (for the proxies; pure functions).

G_l = dL/dW0 of member site l, (d_out, d_in) (``proxies.state`` orientation, Conv1D transposed).
As in the per-site ``spectral`` proxy: the step dW_l = -eta P(G)_l, the gradient projected onto
the updates the bank can express at rank r (best subspace chosen), lowers the loss to first order
by eta * sum_l ||P(G)_l||_F^2, a sum of squared singular values or of eigenvalues. With a single member every variant would
reduce to the per-site value sum_{j<=r} sigma_j(G)^2.

Every variant's value is the sum of the top-r sigma_j(H)^2 of one matrix H built from the members'
G (``STRUCTURE``): their sum (share_ab, tl5, tl6), their vertical stack [G_1; G_2; ...] (share_a:
H^T H = sum_l G_l^T G_l) or their horizontal stack [G_1, G_2, ...] (share_b: H H^T = sum_l G_l G_l^T).
The exact path computes it from the members' G (``bank_spectral``). Streaming scoring never forms
G: it sketches each H in the scoring pass itself (``proxies/group_sketch.py``; one sketch per role,
membership and structure, wide enough for the section's largest rank, ``sketch_groups``) and takes
the value from H's estimated top singular values (``sketched_spectral``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from heterosearch.adapters._members import member_grads, role_spectral
from heterosearch.adapters.bank.config import BankElement, BankSpace, member_sites
from heterosearch.proxies.group_sketch import MemberGroup

UNDEFINED = {
    "grad_norm": "a shared tensor's init-time gradient norm is not comparable to per-site scores",
    "snip": "SNIP of a shared bank at init is not comparable to per-site scores",
    "synflow": "synflow is defined for per-site adapters only",
}


STRUCTURE = {"share_ab": "sum", "tl5": "sum", "tl6": "sum", "share_a": "rows", "share_b": "cols"}


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
    if any(G.dim() != 2 for G in Gs):  # streaming scoring's per-site singular values: it uses sketched_spectral
        raise ValueError(f"{element.key}: a bank needs each member's full gradient, not its singular values")
    r = element.rank
    if element.variant == "share_a":
        return _top(torch.linalg.eigvalsh(sum(G.t() @ G for G in Gs)), r)
    if element.variant == "share_b":
        return _top(torch.linalg.eigvalsh(sum(G @ G.t() for G in Gs)), r)
    return _top(torch.linalg.svdvals(sum(Gs)) ** 2, r)


def member_group(element: BankElement, sites: Sequence[Any], rank: int) -> MemberGroup:
    """The H of ``element`` (module docstring) as a group to sketch, resolving its top ``rank`` values."""
    keys = tuple(s.key for s in member_sites(sites, element))
    return MemberGroup(keys, STRUCTURE[element.variant], rank)


def sketch_groups(section: BankSpace, sites: Sequence[Any], proxies: Sequence[str]) -> list[MemberGroup]:
    """Every H the section's banks need for ``proxies`` (only ``spectral`` needs any), once each
    (variants of one structure share it; its rank is the section's largest, so one sketch
    serves every rank)."""
    from heterosearch.adapters.bank.options import groups

    if "spectral" not in proxies:
        return []
    found = {member_group(o.elements[0], sites, max(section.ranks)): None
             for g in groups(section, sites) for o in g.options[1:]}
    return list(found)


def sketched_spectral(sigma: torch.Tensor, element: BankElement) -> float:
    """``bank_spectral`` from estimates of the top singular values of the element's H (1-D, descending)."""
    return _top(sigma.double() ** 2, element.rank)


def score(model: Any, sites: Sequence[Any], batches: Sequence[Any], section: BankSpace,
          grads: dict[str, dict[str, torch.Tensor]], proxies: Sequence[str], seed: int, scale: Any = None) -> dict[str, Any]:
    """{"spectral": {role: {option label: value}}} from the base model's data gradients (``grads["data"]``),
    or on the streaming path from the sketched H of ``sketch_groups`` (``grads["groups"]``)."""
    from heterosearch.adapters.bank.options import groups

    if "data" in grads or "spectral" not in proxies:
        return role_spectral(groups(section, sites), bank_spectral, grads, proxies)
    sigma = grads.get("groups", {})
    top = max(section.ranks)
    return role_spectral(groups(section, sites), lambda _, e: sketched_spectral(sigma[member_group(e, sites, top)], e),
                         grads, proxies)
