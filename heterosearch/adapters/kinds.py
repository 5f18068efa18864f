"""The adapter-kind registry: each kind is a package (config, layer, registration).

A kind contributes: a unique parameter prefix (``hs_<kind>_``; trainability, state-dict
filtering and counting key off it), an element dataclass (one chosen element of an
allocation, JSON round-trippable), ``apply`` (instantiate elements on a model, in place)
and ``params`` (the exact count, from the formulas in ``space/budget.py``; shared tensors once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.registry import Registry


@dataclass(frozen=True)
class AdapterKind:
    name: str
    prefix: str
    summary: str
    element: type  # dataclass with to_dict() / from_dict(dict)
    # apply(model, sites, elements, generator) -> None; wraps modules / registers shared tensors
    apply: Callable[[Any, Sequence[Any], Sequence[Any], Any], None]
    # params(sites, elements) -> int, exact, shared tensors once
    params: Callable[[Sequence[Any], Sequence[Any]], int]


ADAPTER_KINDS: Registry[AdapterKind] = Registry("adapter kind")
SHARED_MODULE = "hs_shared"  # model-level nn.ModuleDict holding tensors shared across layers


def shared_store(model: Any) -> Any:
    """The model-level ModuleDict where shared banks and pools live (created on first use)."""
    from torch import nn

    if not hasattr(model, SHARED_MODULE):
        model.add_module(SHARED_MODULE, nn.ModuleDict())
    return getattr(model, SHARED_MODULE)
