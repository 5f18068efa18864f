"""Banks as search candidates: per role one alternative to its per-site LoRA, ``bank.<role>``.

Options, in this order (the order scores.json lists them in): "off", then for each membership,
variant and rank > 0 one bank, labelled ``<variant>:r<rank>:<membership>`` (``share_a:r8:all``).
A membership with fewer than 2 layers gives no option (a bank shares across layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heterosearch.adapters.bank.config import BankElement, BankSpace, membership_layers
from heterosearch.models.roles import expand_roles
from heterosearch.space.options import Option, OptionGroup


def label(element: BankElement, membership: str) -> str:
    return f"{element.variant}:r{element.rank}:{membership}"


def groups(section: BankSpace, sites: Sequence[Any]) -> list[OptionGroup]:
    """One ``bank.<role>`` group per role of the section that the model has."""
    n_layers = max(s.layer for s in sites) + 1
    out = []
    for role in expand_roles(section.roles, sites)[0]:  # q, k, v -> one qkv on a fused model; absent roles skipped
        options = [Option("off")]
        for membership in section.membership:
            layers = membership_layers(membership, n_layers)
            if len(layers) < 2:
                continue
            for variant in section.variants:
                for rank in section.ranks:
                    if rank > 0:
                        e = BankElement(role=role, layers=layers, rank=rank, variant=variant)
                        options.append(Option(label(e, membership), (e,)))
        out.append(OptionGroup(f"bank.{role}", "bank", "role", role, role, tuple(options)))
    return out


def values(scores: Any, proxy: str, group: OptionGroup) -> dict[Any, float] | None:
    """The scored banks of the role (None: none scored, so the role gets no bank alternative)."""
    scored = scores.kinds.get(proxy, {}).get("bank", {}).get(group.target)
    return {"off": 0.0, **scored} if scored else None
