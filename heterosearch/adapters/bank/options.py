"""Banks as search candidates: per role one alternative to its per-site LoRA, ``bank.<role>``.

Options, in this order (the order scores.json lists them in): "off", then for each membership,
variant and rank > 0 one bank, labelled ``<variant>:r<rank>:<membership>`` (``share_a:r8:all``).
A membership with fewer than 2 layers gives no option (a bank shares across layers).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from heterosearch.adapters.bank.config import BankElement, BankSpace, membership_layers
from heterosearch.models.roles import expand_roles
from heterosearch.space.options import Option, OptionGroup, role_groups, role_values


def label(element: BankElement, membership: str) -> str:
    return f"{element.variant}:r{element.rank}:{membership}"


def groups(section: BankSpace, sites: Sequence[Any]) -> list[OptionGroup]:
    """One ``bank.<role>`` group per role of the section that the model has."""

    def banks(role: str, n_layers: int) -> Iterator[Option]:
        for membership in section.membership:
            layers = membership_layers(membership, n_layers)
            if len(layers) < 2:
                continue
            for variant in section.variants:
                for rank in section.ranks:
                    if rank > 0:
                        e = BankElement(role=role, layers=layers, rank=rank, variant=variant)
                        yield Option(label(e, membership), (e,))

    # q, k, v -> one qkv on a fused model (models/roles.py); roles the model lacks get no group
    return role_groups("bank", expand_roles(section.roles, sites)[0], sites, banks)


values = role_values  # the scored banks of the role (None: none scored, so the role gets no bank alternative)
