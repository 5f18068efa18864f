"""MoS pools as search candidates: per role one alternative to its per-site LoRA, ``mos.<role>``.

Options, in this order (the order scores.json lists them in): "off", then for each equivalent
rank r_e > 0 and site rank r that MoS can draw (``mos_valid``) one pool over every layer, with
the space's shards and private rank, labelled ``re<r_e>:r<r>`` (``re2:r4``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from heterosearch.adapters.mos.config import MosElement, MosSpace, mos_valid
from heterosearch.models.roles import expand_roles
from heterosearch.space.options import Option, OptionGroup, role_groups, role_values


def groups(section: MosSpace, sites: Sequence[Any]) -> list[OptionGroup]:
    """One ``mos.<role>`` group per role of the section that the model has."""

    def pools(role: str, n_layers: int) -> Iterator[Option]:
        for r_e in section.equivalent_ranks:
            for rank in section.site_ranks:
                if r_e > 0 and mos_valid(r_e, rank, section.private_rank, n_layers):
                    e = MosElement(role=role, r_e=r_e, shards=section.shards, r_p=section.private_rank,
                                   ranks={i: rank for i in range(n_layers)})
                    yield Option(f"re{r_e}:r{rank}", (e,))

    # q, k, v -> one qkv on a fused model (models/roles.py); roles the model lacks get no group
    return role_groups("mos", expand_roles(section.roles, sites)[0], sites, pools)


values = role_values  # the scored pools of the role (None: none scored, so the role gets no MoS alternative)
