"""The proxy interface and registry.

A proxy scores every candidate (site, rank) of the LoRA kind from statistics that one
shared pass over the base model collects for all sites at once (``state.py``). It returns
a *curve* per site: the score of that site at rank 0, 1, ..., r_max (rank 0 scores 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from heterosearch.errors import UserError
from heterosearch.registry import Registry


@dataclass
class SiteState:
    """What a proxy sees of one site in the scoring state (all float64).

    G: (d_out, d_in), dL/dW0 of the frozen weight summed over the scoring batches (or
       dR/dW0 of the synflow pass for data-free proxies).
    A: (r_max, d_in), B: (d_out, r_max): the scoring-only virtual adapter. Rank r uses
       A[:r] and B[:, :r], so the candidates of one site are nested.
    scaling: s, one number for every rank of the curve. The scorer calls ``curve`` with
    s = 1 and multiplies rank r's score by s(r) ** ``scale_degree`` (the rule of
    ``space/scale.py`` may make s depend on r).

    Streaming scoring (``settings.py``) never forms G: then ``G`` is None and the state holds
    what the proxies read instead, from the site's sketch: ``BtG`` = B^T G (r_max, d_in) and
    ``GAt`` = G A^T (d_out, r_max), exact, and ``sigma``, estimates of G's top singular values
    (descending). A proxy that needs more of G than these raises ``UserError`` there.
    """

    G: torch.Tensor | None
    A: torch.Tensor
    B: torch.Tensor
    scaling: float
    BtG: torch.Tensor | None = None  # noqa: N815
    GAt: torch.Tensor | None = None  # noqa: N815
    sigma: torch.Tensor | None = None


class Proxy:
    """Base class. ``source`` says which pass feeds ``G``: ``"data"`` or ``"synflow"``."""

    name: str = ""
    source: str = "data"
    summary: str = ""
    # The sign fixed in advance (methods.md section 6): larger score = better candidate.
    higher_is_better: bool = True
    # The curve is homogeneous of this degree in s: curve(s) = s ** degree * curve(1) (a
    # contract test checks it for every registered proxy). LoRA gradients are linear in s.
    scale_degree: int = 1

    def curve(self, state: SiteState) -> torch.Tensor:
        """Score at ranks 0..r_max, shape (r_max + 1,), non-decreasing is not required."""
        raise NotImplementedError


PROXIES: Registry[type[Proxy]] = Registry("proxy")


def lora_grads(state: SiteState) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact LoRA gradients in the linearised scoring state (methods.md, "The B = 0 fact").

    For delta = s B A:  dL/dA = s B^T G  (r_max, d_in),  dL/dB = s G A^T  (d_out, r_max).
    Column/row j of these belongs to rank component j, so rank r sums the first r.
    """
    s = state.scaling
    if state.G is None:  # streaming: the sketch holds both products exactly
        if state.BtG is None or state.GAt is None:
            raise UserError("this proxy needs dL/dA and dL/dB, which this scoring state does not hold")
        return s * state.BtG, s * state.GAt
    dA = s * (state.B.t() @ state.G)
    dB = s * (state.G @ state.A.t())
    return dA, dB


def with_rank_zero(per_rank: torch.Tensor) -> torch.Tensor:
    """Prefix sums over rank components, with a leading 0 for rank 0."""
    return torch.cat([per_rank.new_zeros(1), torch.cumsum(per_rank, dim=0)])
