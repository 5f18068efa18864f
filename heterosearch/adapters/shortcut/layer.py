"""LoRA-adapted shortcut connections (HeteroLoRA; methods.md section 2), attached with hooks.

Each element adds ``s * B A src`` (A: (r, d), B: (d, r), d = hidden size) to one residual
sum of its layer, where ``src`` is x_l, h_l or h_{l-1} (``config.WIRING``) and the add
points are those of ``blocks.PLANS``.

Init rule (adapted model == base model at init): A is Kaiming-uniform U(+-1/sqrt(d)) and B is
zero, so every term is exactly 0 before the first step, and nothing else (no extra LayerNorm)
is added to the block; HeteroLoRA's code instead re-applies a LayerNorm after every
cross-layer add, which changes the model even with every shortcut off.

Scale rule: a term is LoRA of rank r on a zero d x d map reading ``src``, so s(r) is the run's
per-site LoRA rule (``space/scale.py``; rslora: s = alpha / sqrt(r)) at its rank: its first
update has the size of rank-r LoRA on a d x d site with the same input (shortcut_sa reads x_l,
as q, k and v do: 1.06x rank-matched LoRA on q after one Adam step, benchmarks/kind_scaling.py).
Its effect on the model is still larger than LoRA on o or ffn_out, the sites that add to the
same residual sums, because its source (x_l or h_l, the LayerNorm outputs of the residual
stream) is larger than theirs (the attention context, the FFN activations): 2-4.5x their
||delta y|| at the same s. That is the connection's nature, not a scale bug; the search weighs
it with a measured training signal (``proxies/calibration.py``). Before this rule shortcuts
kept s = 2 at every rank (2.8x the rule at r = 16); direct calls without a rule
(``scale=None``) still get s = SCALING = 2, and HeteroLoRA's code uses alpha_s = 4 (s = 4 / r):
pass ``alpha=4`` to reproduce it.

The tensors live in ``shared_store(model)["shortcut"]`` (a ``ShortcutStore``), one
``ShortcutTerm`` per element under the key ``"L3_residual_1"``, so their parameter names are
``hs_shared.shortcut.L3_residual_1.hs_shortcut_A`` / ``..._B``. The hooks are bound methods
of that store (a deep copy of the model gets hooks that use the copy's tensors); captured
sources live in ``store.cache`` only while the layers that read them run.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from heterosearch.adapters._linear import kaiming_A
from heterosearch.adapters.kinds import shared_store
from heterosearch.adapters.shortcut.blocks import BlockPlan, find_blocks
from heterosearch.adapters.shortcut.config import (
    PREFIX,
    WIRING,
    ShortcutElement,
    check_elements,
    hidden_size,
    sort_key,
)
from heterosearch.models.sites import Site
from heterosearch.space.scale import kind_scaling

__all__ = ["PREFIX", "SCALING", "STORE_NAME", "ShortcutStore", "ShortcutTerm", "apply_shortcuts", "remove_shortcuts"]
SCALING = 2.0  # s without a scale rule (direct calls, files from before the rule): alpha = 2 r
STORE_NAME = "shortcut"


def first_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """The hidden states a block / LayerNorm / projection was called with (positional or keyword)."""
    if args:
        return args[0]
    for name in ("hidden_states", "input", "x"):
        if name in kwargs:
            return kwargs[name]
    raise ValueError(f"cannot find the hidden states among the keyword arguments {sorted(kwargs)}")


def replace_first_input(args: tuple[Any, ...], kwargs: dict[str, Any], value: torch.Tensor) -> tuple[Any, Any]:
    """(args, kwargs) with the hidden states replaced by ``value`` (the return value of a pre-hook)."""
    if args:
        return (value, *args[1:]), kwargs
    name = next(n for n in ("hidden_states", "input", "x") if n in kwargs)
    return args, {**kwargs, name: value}


class ShortcutTerm(nn.Module):
    """The trainable part of one connection: ``delta(h) = s * B A h`` on the last dimension."""

    def __init__(
        self, d: int, rank: int, scaling: float, like: torch.Tensor, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"shortcut rank must be >= 1, got {rank}")
        self.rank = rank
        self.scaling = float(scaling)
        self.hs_shortcut_A = kaiming_A(rank, d, like, generator)  # PEFT's LoRA init
        self.hs_shortcut_B = nn.Parameter(torch.zeros(d, rank, dtype=like.dtype, device=like.device))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # h: (..., d) -> (..., r) -> (..., d)
        return (h @ self.hs_shortcut_A.t()) @ self.hs_shortcut_B.t() * self.scaling

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling:g}"


def term_name(layer: int, ctype: str) -> str:
    """ModuleDict key of a term (no dots allowed there): ``"L3_residual_1"``."""
    return f"L{layer}_{ctype}"


class ShortcutStore(nn.ModuleDict):
    """All shortcut terms of a model, plus the hooks that read sources and add the terms."""

    def __init__(self, plan: BlockPlan, blocks: Sequence[str]) -> None:
        super().__init__()
        self.plan = plan
        self.blocks = list(blocks)
        self.cache: dict[tuple[str, int], torch.Tensor] = {}
        self.handles: list[Any] = []
        # (add point, layer) -> [(term name, source key)], rebuilt by install()
        self.routes: dict[tuple[str, int], list[tuple[str, tuple[str, int]]]] = {}
        self.kept: set[tuple[str, int]] = set()  # sources still needed after their own layer
        self._x_needed: set[int] = set()

    # -- wiring -----------------------------------------------------------------------------
    def install(self, model: nn.Module) -> None:
        """(Re-)register the hooks for the terms currently in the store."""
        self.remove_hooks()
        self.routes, sources = {}, set()
        for name in self.keys():
            layer_text, _, ctype = name.partition("_")
            layer = int(layer_text[1:])
            src, offset, point = WIRING[ctype]
            self.routes.setdefault((point, layer), []).append((name, (src, layer + offset)))
            sources.add((src, layer + offset))
        # h_l read by layer l+1 (shortcut_ffn) must outlive layer l
        self.kept = {src for (_, layer), rs in self.routes.items() for _, src in rs if src[1] != layer}
        self._x_needed = {i for s, i in sources if s == "x"}
        add = self._add_input if self.plan.mode == "input" else self._add_output
        for layer, prefix in enumerate(self.blocks):
            block = model.get_submodule(prefix)
            hook = functools.partial(self._capture, "x", layer)
            self.handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
            self.handles.append(block.register_forward_hook(functools.partial(self._done, layer), always_call=True))
            if ("h", layer) in sources:
                module = model.get_submodule(f"{prefix}.{self.plan.h_source}")
                hook = functools.partial(self._capture, "h", layer)
                self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            for point, rel in (("attn", self.plan.attn_add), ("ffn", self.plan.ffn_add)):
                if (point, layer) in self.routes:
                    module = model.get_submodule(f"{prefix}.{rel}")
                    hook = functools.partial(add, point, layer)
                    if self.plan.mode == "input":
                        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
                    else:
                        self.handles.append(module.register_forward_hook(hook))

    def remove_hooks(self) -> None:
        """Detach every hook (the tensors stay) and drop captured sources."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        self.cache.clear()

    # -- hooks --------------------------------------------------------------------------------
    def _capture(self, kind: str, layer: int, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if kind == "x" and layer == 0:
            self.cache.clear()  # a forward that raised may have left sources behind
        if kind == "h" or layer in self._x_needed:
            self.cache[(kind, layer)] = first_input(args, kwargs)

    def _with_terms(self, point: str, layer: int, target: torch.Tensor) -> torch.Tensor:
        total = target
        for name, source in self.routes[(point, layer)]:
            if source not in self.cache:
                raise RuntimeError(
                    f"shortcut {name}: source {source[0]}_{source[1]} was not captured; run the whole model "
                    "(single blocks and gradient checkpointing are not supported)"
                )
            total = total + self[name](self.cache[source]).reshape(target.shape)  # OPT's FFN runs on (B*T, d)
        return total

    def _add_input(
        self, point: str, layer: int, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Any]:
        return replace_first_input(args, kwargs, self._with_terms(point, layer, first_input(args, kwargs)))

    def _add_output(self, point: str, layer: int, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        return self._with_terms(point, layer, output)

    def _done(self, layer: int, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        # x_l and h_{l-1} are read only inside layer l; h_l too unless layer l+1 has a shortcut_ffn.
        self.cache.pop(("x", layer), None)
        self.cache.pop(("h", layer - 1), None)
        if ("h", layer) not in self.kept:
            self.cache.pop(("h", layer), None)


def shortcut_store(model: nn.Module) -> ShortcutStore | None:
    """The model's ShortcutStore, or None if no shortcut was ever applied."""
    store = shared_store(model)
    return store[STORE_NAME] if STORE_NAME in store else None  # type: ignore[return-value]


def apply_shortcuts(
    model: nn.Module,
    sites: Sequence[Site],
    elements: Sequence[ShortcutElement],
    generator: torch.Generator | None = None,
    scale: Any = None,
    *,
    alpha: float | None = None,
) -> None:
    """Instantiate ``elements`` on ``model`` in place (base weights are left as they are).

    A matrices are drawn from ``generator`` in canonical (layer, ctype) order. ``scale``: the
    run's per-site LoRA scale rule (``space/scale.py``), applied at each term's rank; None:
    s = SCALING. ``alpha`` (overrides ``scale``): s = alpha / r. Calling again adds more elements.
    """
    check_elements(sites, elements)
    plan, blocks = find_blocks(model, sites)
    d = hidden_size(sites)
    o_site = next(s for s in sites if s.role == "o")
    like = next(model.get_submodule(o_site.name).parameters())
    store = shortcut_store(model)
    if store is None:
        store = ShortcutStore(plan, blocks)
        shared_store(model)[STORE_NAME] = store
    elif store.blocks != blocks:
        raise ValueError("the model's shortcut store was built for other blocks")
    for e in sorted(elements, key=sort_key):
        name = term_name(e.layer, e.ctype)
        if name in store:
            raise ValueError(f"{e.key}: the model already has this shortcut")
        scaling = kind_scaling(scale, e.rank, SCALING) if alpha is None else alpha / e.rank
        store[name] = ShortcutTerm(d, e.rank, scaling, like, generator)
    store.install(model)


def remove_shortcuts(model: nn.Module, keep_params: bool = False) -> None:
    """Remove every shortcut hook (the model computes the base model again); drop the tensors unless kept."""
    store = shortcut_store(model)
    if store is None:
        return
    store.remove_hooks()
    if not keep_params:
        del shared_store(model)[STORE_NAME]
