"""Shared and tied banks (methods.md section 3): one low-rank pair for one role across layers.

    delta_l(x) = s(r) * v_l * (B_l (u_l * (A_l x)))

    variant   A (r, d_in)          B (d_out, r)        u_l (r), v_l (d_out)
    share_a   shared               per layer           -
    share_b   per layer            shared              -
    share_ab  shared               shared              -
    tl5       shared               shared              buffers, frozen at 1
    tl6       shared               shared              per-layer parameters, init 1

Init rule (adapted model == base model at init): A is Kaiming-uniform U(+-1/sqrt(d_in)) (as
LoRA), B is zero and u = v = 1, so every delta_l is exactly 0 before the first step (tl6's u, v
get zero gradient then, since B = 0).

Scale rule: s(r) is the run's per-site LoRA rule (``space/scale.py``; rslora: s = alpha /
sqrt(r)) at the bank's rank r, so a member site's first update has the size of rank-r LoRA on
that site. Why this is the right match: at step 1 only B moves (dL/dA = s B^T G = 0), and Adam
moves every entry of B by about lr whatever its gradient's size, so the shared B, whose
gradient is summed over the L member layers (sum_l s G_l A^T), takes a step of the same size
as a per-layer B; the member's delta s dB A x then equals rank-r LoRA's up to the sign pattern
(measured on all-MiniLM-L6-v2, benchmarks/kind_scaling.py: 0.90-1.06x rank-matched LoRA's
||delta y|| on every variant). Before this rule banks kept s = 2 at every rank, which at r = 32
made their first step 3.7-4.2x LoRA's (docs: README "Scale and init of each kind").
Direct calls without a rule (``scale=None``) keep s = SCALING = 2.

Shared tensors live once in ``shared_store(model)[element.store_name]``; each site
wrapper keeps a plain (unregistered) reference to that module, so ``named_parameters`` and
``state_dict`` name every shared tensor exactly once, under ``hs_shared.<store_name>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from heterosearch.adapters._linear import DeltaLinear, kaiming_A
from heterosearch.adapters._members import set_submodule
from heterosearch.adapters.bank.config import PREFIX, BankElement, member_sites
from heterosearch.adapters.kinds import shared_store
from heterosearch.models.sites import Site
from heterosearch.space.scale import kind_scaling

__all__ = ["PREFIX", "SCALING", "BankLinear", "BankShared", "apply_banks"]
SCALING = 2.0  # s without a scale rule (direct calls, files from before the rule): alpha = 2 r


class BankShared(nn.Module):
    """The tensors of one bank that all member sites share (lives in ``shared_store``)."""

    def __init__(
        self, variant: str, rank: int, d_in: int, d_out: int, like: torch.Tensor, generator: torch.Generator | None
    ) -> None:
        super().__init__()
        self.variant = variant
        if variant != "share_b":
            self.hs_bank_A = kaiming_A(rank, d_in, like, generator)
        if variant != "share_a":
            self.hs_bank_B = nn.Parameter(torch.zeros(d_out, rank, dtype=like.dtype, device=like.device))

    def extra_repr(self) -> str:
        return f"variant={self.variant}"


class BankLinear(DeltaLinear):
    """Wraps a frozen ``nn.Linear`` / GPT-2 ``Conv1D``: ``base_layer(x) + delta(x)`` with a bank."""

    def __init__(
        self,
        base_layer: nn.Module,
        shared: BankShared,
        d_in: int,
        d_out: int,
        rank: int,
        scaling: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(base_layer, rank, scaling)
        self.variant = shared.variant
        # A tuple hides the module from registration: a reference, not a second name for its tensors.
        self._shared = (shared,)
        like = next(base_layer.parameters())
        if self.variant == "share_a":
            self.hs_bank_B = nn.Parameter(torch.zeros(d_out, rank, dtype=like.dtype, device=like.device))
        elif self.variant == "share_b":
            self.hs_bank_A = kaiming_A(rank, d_in, like, generator)
        elif self.variant == "tl5":  # frozen at 1: buffers, never counted, never trained
            self.register_buffer("hs_bank_u", torch.ones(rank, dtype=like.dtype, device=like.device))
            self.register_buffer("hs_bank_v", torch.ones(d_out, dtype=like.dtype, device=like.device))
        elif self.variant == "tl6":
            self.hs_bank_u = nn.Parameter(torch.ones(rank, dtype=like.dtype, device=like.device))
            self.hs_bank_v = nn.Parameter(torch.ones(d_out, dtype=like.dtype, device=like.device))

    @property
    def shared(self) -> BankShared:
        return self._shared[0]

    @property
    def A(self) -> torch.Tensor:  # noqa: N802 - the paper's name
        return self.hs_bank_A if self.variant == "share_b" else self.shared.hs_bank_A

    @property
    def B(self) -> torch.Tensor:  # noqa: N802
        return self.hs_bank_B if self.variant == "share_a" else self.shared.hs_bank_B

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.A.t()  # (..., d_in) -> (..., r)
        if self.variant in ("tl5", "tl6"):
            h = h * self.hs_bank_u
        h = h @ self.B.t()  # (..., r) -> (..., d_out)
        if self.variant in ("tl5", "tl6"):
            h = h * self.hs_bank_v
        return h * self.scaling

    def extra_repr(self) -> str:
        return f"variant={self.variant}, rank={self.rank}, scaling={self.scaling:g}"


def apply_banks(
    model: nn.Module,
    sites: Sequence[Site],
    elements: Sequence[BankElement],
    generator: torch.Generator | None,
    scale: Any = None,
) -> None:
    """Instantiate ``elements`` on ``model`` in place (base weights are left as they are).

    ``scale``: the run's per-site LoRA scale rule (``space/scale.py``); each bank's s is that
    rule at the bank's rank. None: s = SCALING at every rank.

    Draw order from ``generator``: per element in the given order, the shared A (if any),
    then each member's own A (share_b) in layer order.
    """
    covered: dict[str, str] = {}
    for element in elements:
        for site in member_sites(sites, element):
            if site.key in covered:
                raise ValueError(f"site {site.key} is in two banks: {covered[site.key]} and {element.key}")
            covered[site.key] = element.key
    store = shared_store(model)
    for element in elements:
        members = member_sites(sites, element)
        if element.store_name in store:
            raise ValueError(f"{element.key}: the model already has a bank {element.store_name!r}")
        d_in, d_out = members[0].d_in, members[0].d_out
        like = next(model.get_submodule(members[0].name).parameters())
        shared = BankShared(element.variant, element.rank, d_in, d_out, like, generator)
        store[element.store_name] = shared
        for site in members:
            base = model.get_submodule(site.name)
            wrapper = BankLinear(base, shared, d_in, d_out, element.rank, kind_scaling(scale, element.rank, SCALING),
                                 generator)
            set_submodule(model, site.name, wrapper)
