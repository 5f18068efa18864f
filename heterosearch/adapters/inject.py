"""Apply an allocation to a model: freeze the base, wrap the chosen sites, count.

Every adapter parameter carries the prefix ``hs_`` (``hs_lora_A`` ...): trainability,
state-dict filtering and parameter counting key off it, as in PEFT.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from heterosearch.adapters.kinds import ADAPTER_KINDS, in_apply_order
from heterosearch.models.sites import Site
from heterosearch.space.allocation import Allocation
from heterosearch.space.scale import LoraScale, as_scale

ADAPTER_PREFIX = "hs_"
# Task heads that PEFT's SEQ_CLS task type also trains (its modules_to_save).
HEAD_NAMES = ("classifier", "pre_classifier", "score")


def apply_allocation(
    model: nn.Module,
    sites: Iterable[Site],
    allocation: Allocation,
    scaling: LoraScale | float,
    seed: int = 0,
    train_head: bool = True,
) -> nn.Module:
    """Freeze ``model``, then instantiate every kind's elements of ``allocation`` (in place).

    Kinds apply in their ``apply_order`` (banks and pools wrap the frozen sites, then per-site
    LoRA wraps whatever is there, then shortcuts hook whole blocks), all drawing from one
    generator seeded with ``seed``, each in its own documented order over the sites in site
    order, so the same allocation and seed give the same initial adapters. ``scaling``: the
    per-site LoRA scale rule s(r) (``space/scale.py``); a bare number is the same s at every rank.
    """
    scale = as_scale(scaling)
    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    ordered = sorted({s.key: s for s in sites}.values())
    unknown_kinds = set(allocation.elements) - set(ADAPTER_KINDS.names())
    if unknown_kinds:
        raise ValueError(f"allocation has elements of unknown kinds {sorted(unknown_kinds)}")
    items = allocation.element_dicts()
    for kind in in_apply_order():
        if items.get(kind.name):
            kind.apply(model, ordered, kind.from_dicts(items[kind.name]), generator, scale=scale)
    if train_head:
        for p in head_parameters(model).values():
            p.requires_grad_(True)
    return model


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Adapter parameters by name, each tensor once (shared tensors keep their first name)."""
    out: dict[str, nn.Parameter] = {}
    for name, p in model.named_parameters():  # named_parameters() already de-duplicates shared tensors
        if name.rpartition(".")[2].startswith(ADAPTER_PREFIX):
            out[name] = p
    return out


def head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The task head's parameters (reported separately, never charged to the budget)."""
    out: dict[str, nn.Parameter] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if any(part in HEAD_NAMES for part in parts) and not parts[-1].startswith(ADAPTER_PREFIX):
            out[name] = p
    return out


def count_adapter_params(model: nn.Module) -> int:
    """Trainable adapter parameters of the instantiated model: what the budget formulas must match."""
    seen: set[int] = set()
    total = 0
    for p in adapter_parameters(model).values():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def adapter_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter buffers (MoS shard indices, frozen Tied-LoRA scalings): saved so reload is exact."""
    return {n: b for n, b in model.named_buffers() if n.rpartition(".")[2].startswith(ADAPTER_PREFIX)}


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter parameters and buffers and the head: what a trained allocation saves."""
    keep: Mapping[str, torch.Tensor] = {**adapter_parameters(model), **adapter_buffers(model), **head_parameters(model)}
    return {k: v.detach().clone().contiguous() for k, v in keep.items()}
