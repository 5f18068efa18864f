"""The adapter-kind registry: each kind is one package, ``adapters/<kind>/``, registered once.

A kind package holds everything about the kind (README "Search spaces and adapter kinds"):

- ``config.py`` (torch-free): the element dataclass (one chosen element of an allocation,
  JSON round-trippable, with its exact parameter count ``params(sites)`` and its report lines),
  the YAML section dataclass of the search space, and the formula;
- ``layer.py``: the modules and ``apply_<...>(model, sites, elements, generator, scale=None)``;
- ``options.py`` (torch-free): its candidates for the search, as option groups whose options
  carry elements (``adapters/<kind>/options.py``);
- ``scoring.py``: its proxy scores and the table ``UNDEFINED`` of proxies undefined for it;
- ``examples.py``: example allocations and a space section for the contract suite
  (``tests/test_contracts.py`` reads them from every registered kind);
- ``__init__.py``: one ``register_kind(AdapterKind(...))``, importing only torch-free modules
  (layer and scoring are imported on first use, so ``heterosearch --help`` needs no torch).

Every adapter parameter carries the kind's prefix ``hs_<kind>_``: trainability, state-dict
filtering and counting key off it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from heterosearch.registry import Registry
from heterosearch.space.kinds import SECTIONS, KindSection, count_params


@dataclass(frozen=True)
class AdapterKind:
    name: str
    prefix: str
    summary: str
    apply_order: int  # see space.kinds.KindSection: banks/pools 10-20, per-site LoRA 30, shortcuts 40
    element: type  # dataclass with to_dict() / from_dict(dict) / params(sites by key)
    section: type  # the search-space section: from_dict(data, where, path)
    package: str  # the kind's package (its __name__): layer / options / scoring modules live there
    apply_name: str  # the function of ``<package>.layer`` that instantiates elements

    def module(self, name: str) -> ModuleType:
        """``<package>.<name>`` (layer, options, scoring), imported on first use."""
        return importlib.import_module(f"{self.package}.{name}")

    @property
    def apply(self) -> Callable[..., None]:
        """apply(model, sites, elements, generator, scale=None): wraps modules / registers shared tensors."""
        return getattr(self.module("layer"), self.apply_name)

    def params(self, sites: Sequence[Any], elements: Sequence[Any]) -> int:
        """Exact trainable parameters of ``elements`` on ``sites`` (shared tensors once): ``count_params``."""
        return count_params(elements, {s.key: s for s in sites})

    def from_dicts(self, items: Sequence[Mapping[str, Any]]) -> list[Any]:
        return [self.element.from_dict(e) for e in items]


ADAPTER_KINDS: Registry[AdapterKind] = Registry("adapter kind")
SHARED_MODULE = "hs_shared"  # model-level nn.ModuleDict holding tensors shared across layers


def register_kind(kind: AdapterKind) -> AdapterKind:
    """The one registration of a kind: here, and its torch-free half in space's section registry."""
    ADAPTER_KINDS.add(kind.name, kind)
    SECTIONS.add(kind.name, KindSection(kind.name, kind.apply_order, kind.section, kind.element))
    return kind


def in_apply_order() -> list[AdapterKind]:
    """Banks and pools first (they wrap the frozen sites), then per-site LoRA, then shortcuts."""
    return sorted((k for _, k in ADAPTER_KINDS.items()), key=lambda k: (k.apply_order, k.name))


def lazy_exports(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports ``name`` from ``<package>.<table[name]>`` on first use.

    Kind packages export their torch modules this way, so importing a kind stays torch-free.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{table[name]}"), name)

    return __getattr__


def shared_store(model: Any) -> Any:
    """The model-level ModuleDict where shared banks and pools live (created on first use)."""
    from torch import nn

    if not hasattr(model, SHARED_MODULE):
        model.add_module(SHARED_MODULE, nn.ModuleDict())
    return getattr(model, SHARED_MODULE)
