"""Mixture of Shards (arXiv 2410.00938; methods.md section 4): LoRA whose A and B rows are drawn from a pool.

One pool per role, shared by the element's L layers, with l shards per vector:

    A pool: (r_e L l, d_in / l), U(-1/sqrt(d_in), 1/sqrt(d_in)) (LoRA's Kaiming init, fan d_in)
    B pool: (r_e L l, d_out / l), zeros (so the adapted model equals the base model at init)

Pool rows [P, r_e L l) with P = (r_e - r_p) L l are private: layer number p (0-based, in layer
order) owns rows P + p r_p l ... P + (p + 1) r_p l. Layer p of rank r selects r l shards per
matrix: its r_p l private shards and (r - r_p) l public shards drawn without replacement
(subset selection), A and B from separate draws (pair dissociation). Then

    A_p = A_pool[idx_A].reshape(r, d_in)     # row j = shards idx_A[j l : (j + 1) l] side by side
    B_p = B_pool[idx_B].reshape(r, d_out).T  # vector sharding, same for B
    delta(x) = s(r) * B_p A_p x

Init rule (adapted model == base model at init): the B pool is zero, so every B_p is zero and
every delta is exactly 0 before the first step; the A pool is U(+-1/sqrt(d_in)) (fan d_in, not
d_in / l), so each A_p has LoRA's init distribution whatever l.

Scale rule: s(r) is the run's per-site LoRA rule (``space/scale.py``; rslora: s = alpha /
sqrt(r)) at the site rank r (the shards drawn, not r_e), so each site's first update has the
size of rank-r LoRA on that site: at step 1 only the B pool moves, Adam moves each of its
entries by about lr whatever the (layer-summed) gradient, and A_p is distributed as LoRA's A
(measured, benchmarks/kind_scaling.py: 0.95-0.98x rank-matched LoRA's ||delta y||). Before this
rule pools kept s = 2 at every site rank (2.7x LoRA's first step at r = 16). Direct calls
without a rule (``scale=None``) keep s = SCALING = 2.

The indices are fixed at init (not a learned router) and stored as buffers, so loading a state
dict reproduces the selection whatever generator the fresh model was built with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from heterosearch.adapters._linear import DeltaLinear
from heterosearch.adapters._members import set_submodule
from heterosearch.adapters.kinds import shared_store
from heterosearch.adapters.mos.config import PREFIX, MosElement, member_sites
from heterosearch.models.sites import Site
from heterosearch.space.scale import kind_scaling

__all__ = ["PREFIX", "SCALING", "MosLinear", "MosPool", "apply_mos"]
SCALING = 2.0  # s without a scale rule (direct calls, files from before the rule): alpha = 2 r


class MosPool(nn.Module):
    """The shard pools of one role (lives in ``shared_store``); the only trainable MoS tensors."""

    def __init__(
        self, element: MosElement, d_in: int, d_out: int, like: torch.Tensor, generator: torch.Generator | None
    ) -> None:
        super().__init__()
        l = element.shards  # noqa: E741 - the paper's name
        n_layers = len(element.layers)
        self.shards = l
        self.size = element.r_e * n_layers * l  # shards per pool
        self.public = (element.r_e - element.r_p) * n_layers * l
        self.private_per_layer = element.r_p * l
        kw = {"dtype": like.dtype, "device": like.device}
        self.hs_mos_A = nn.Parameter(torch.empty(self.size, d_in // l, **kw))
        self.hs_mos_B = nn.Parameter(torch.zeros(self.size, d_out // l, **kw))
        if like.device.type != "meta":
            bound = 1.0 / math.sqrt(d_in)  # kaiming_uniform_(a=sqrt(5)) with fan = d_in, not d_in / l
            nn.init.uniform_(self.hs_mos_A, -bound, bound, generator=generator)

    def draw(self, position: int, rank: int, generator: torch.Generator | None) -> torch.Tensor:
        """Shard indices (rank * l,) of the layer at ``position``: public draw, then its private shards."""
        l = self.shards  # noqa: E741
        private_rank = self.private_per_layer // l
        public = torch.randperm(self.public, generator=generator)[: (rank - private_rank) * l]
        start = self.public + position * self.private_per_layer
        private = torch.arange(start, start + self.private_per_layer)
        return torch.cat([public, private]).to(self.hs_mos_A.device)

    def extra_repr(self) -> str:
        return f"shards={self.size}, public={self.public}, l={self.shards}"


class MosLinear(DeltaLinear):
    """Wraps a frozen ``nn.Linear`` / GPT-2 ``Conv1D``: ``base_layer(x) + delta(x)`` with pooled A, B."""

    def __init__(
        self,
        base_layer: nn.Module,
        pool: MosPool,
        d_in: int,
        d_out: int,
        rank: int,
        scaling: float,
        idx_A: torch.Tensor,  # noqa: N803
        idx_B: torch.Tensor,  # noqa: N803
    ) -> None:
        super().__init__(base_layer, rank, scaling)
        self.d_in, self.d_out = d_in, d_out
        self._pool = (pool,)  # a reference, not a registered submodule: the pool is named once, in hs_shared
        self.register_buffer("hs_mos_idx_A", idx_A.long())
        self.register_buffer("hs_mos_idx_B", idx_B.long())

    @property
    def pool(self) -> MosPool:
        return self._pool[0]

    @property
    def A(self) -> torch.Tensor:  # noqa: N802 - the paper's name
        """(r, d_in): row j = l consecutive selected A shards."""
        return self.pool.hs_mos_A[self.hs_mos_idx_A].reshape(self.rank, self.d_in)

    @property
    def B(self) -> torch.Tensor:  # noqa: N802
        """(d_out, r): column j = l consecutive selected B shards."""
        return self.pool.hs_mos_B[self.hs_mos_idx_B].reshape(self.rank, self.d_out).t()

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., d_in) -> (..., r) -> (..., d_out)
        return (x @ self.A.t()) @ self.B.t() * self.scaling


def apply_mos(
    model: nn.Module,
    sites: Sequence[Site],
    elements: Sequence[MosElement],
    generator: torch.Generator | None,
    scale: Any = None,
) -> None:
    """Instantiate ``elements`` on ``model`` in place (base weights are left as they are).

    ``scale``: the run's per-site LoRA scale rule (``space/scale.py``); each member's s is
    that rule at its site rank. None: s = SCALING at every rank.

    Draw order from ``generator``: per element in the given order, the A pool, then per member
    layer in layer order its A indices and its B indices.
    """
    store = shared_store(model)
    roles = [e.role for e in elements]
    if len(set(roles)) != len(roles):
        raise ValueError(f"MoS has one pool per role; roles repeated in {roles}")
    for element in elements:
        members = member_sites(sites, element)
        d_in, d_out = members[0].d_in, members[0].d_out
        if d_in % element.shards or d_out % element.shards:
            raise ValueError(
                f"{element.key}: MosElement.shards = {element.shards} must divide d_in = {d_in} and d_out = {d_out}"
            )
        if element.store_name in store:
            raise ValueError(f"{element.key}: the model already has a pool {element.store_name!r}")
    for element in elements:
        members = member_sites(sites, element)
        d_in, d_out = members[0].d_in, members[0].d_out
        like = next(model.get_submodule(members[0].name).parameters())
        pool = MosPool(element, d_in, d_out, like, generator)
        store[element.store_name] = pool
        for position, site in enumerate(members):
            rank = element.ranks[site.layer]
            idx_A = pool.draw(position, rank, generator)  # noqa: N806
            idx_B = pool.draw(position, rank, generator)  # noqa: N806 - separate draw: pair dissociation
            base = model.get_submodule(site.name)
            scaling = kind_scaling(scale, rank, SCALING)
            set_submodule(model, site.name, MosLinear(base, pool, d_in, d_out, rank, scaling, idx_A, idx_B))
