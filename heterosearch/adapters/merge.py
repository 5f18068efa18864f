"""Fold every adapter that is a linear map of one weight into that weight: a plain transformers model.

Per-site LoRA, banks and MoS pools all wrap a frozen linear layer as
``base_layer(x) + delta(x)`` with ``delta`` linear in x and bias-free, so the delta's matrix is
``delta`` evaluated on the identity: M = delta(I_{d_in}), shape (d_in, d_out). ``nn.Linear``
stores W as (d_out, d_in) and computes x W^T, so W += M^T; GPT-2's ``Conv1D`` stores (d_in, d_out)
and computes x W, so W += M. No kind-specific code: any wrapper with ``base_layer`` and ``delta``
merges, whatever its sharing scheme (a shared bank contributes its product to every member).

Shortcuts are not merged and stay as hooks: a shortcut adds a low-rank map of one layer's
*input* to another layer's output (HeteroLoRA), which no single weight of the base model
computes. ``merge_and_unload`` keeps them working and says how many remain.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from heterosearch.adapters._members import set_submodule
from heterosearch.adapters.kinds import SHARED_MODULE

_HOOK_DICTS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called")
SHORTCUT_STORE = "shortcut"


def is_mergeable(module: nn.Module) -> bool:
    return hasattr(module, "base_layer") and callable(getattr(module, "delta", None))


@torch.no_grad()
def delta_matrix(module: nn.Module) -> torch.Tensor:
    """M with delta(x) = x @ M, shape (d_in, d_out), from the wrapper's own forward maths."""
    weight = module.base_layer.weight
    d_in = weight.shape[0] if _is_conv1d(module.base_layer) else weight.shape[1]
    eye = torch.eye(d_in, dtype=weight.dtype, device=weight.device)
    return module.delta(eye)


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every linear adapter into its base weight and unwrap it, in place; returns ``model``.

    Inner wrappers first (a LoRA may wrap a bank-wrapped layer), so each merge sees a plain
    layer below it. Hooks a shortcut put on a wrapper move to the layer that replaces it.
    """
    wrappers = [(n, m) for n, m in model.named_modules() if is_mergeable(m)]
    for name, wrapper in sorted(wrappers, key=lambda nm: -nm[0].count(".")):
        base = wrapper.base_layer
        m = delta_matrix(wrapper)
        with torch.no_grad():
            if _is_conv1d(base):
                base.weight += m
            else:
                base.weight += m.t()
        for attr in _HOOK_DICTS:
            hooks = getattr(wrapper, attr, None)
            if hooks:
                getattr(base, attr).update(hooks)
        set_submodule(model, name, base)
    store = getattr(model, SHARED_MODULE, None)
    if store is not None:
        for key in [k for k in store if k != SHORTCUT_STORE]:  # banks and pools: merged above
            del store[key]
        if not len(store):
            delattr(model, SHARED_MODULE)
    return model


def remaining_shortcuts(model: nn.Module) -> int:
    store = getattr(model, SHARED_MODULE, None)
    return 0 if store is None or SHORTCUT_STORE not in store else sum(1 for _ in store[SHORTCUT_STORE].parameters())


def _is_conv1d(layer: Any) -> bool:
    return type(layer).__name__ == "Conv1D"  # transformers.pytorch_utils.Conv1D: weight (d_in, d_out)
