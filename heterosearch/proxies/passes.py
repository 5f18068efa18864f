"""Scoring-pass helpers shared by the exact (``state.py``) and streaming (``streaming.py``) paths.

Micro-batches with gradient accumulation, gradient checkpointing, input gradients and a frozen
model: how one scoring forward/backward is run, apart from what it accumulates (kept apart
from both paths so neither imports the other).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from heterosearch.errors import UserError


def micro_batches(batch: dict[str, Any], size: int | None) -> Iterator[tuple[dict[str, Any], float]]:
    """(micro-batch, weight) pairs with sum_m weight_m * loss_m = the batch loss.

    HF classification / regression losses are means over examples, so a micro-batch of n_m of
    the batch's n examples is weighted n_m / n and the accumulated gradient is the batch's.
    """
    n = len(batch["input_ids"])
    if size is None or size >= n:
        yield batch, 1.0
        return
    for start in range(0, n, size):
        part = {k: (v[start:start + size] if torch.is_tensor(v) and v.dim() > 0 and len(v) == n else v)
                for k, v in batch.items()}
        yield part, min(size, n - start) / n


@contextmanager
def checkpointed(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Reentrant gradient checkpointing of the model's layers inside (no-op unless ``enabled``).

    The model is left as found: checkpointing flags, and each module's train/eval mode (the
    caller restores modes; this only flips the checkpointed layers, see the module doc).
    """
    if not enabled:
        yield
        return
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise UserError(f"{type(model).__name__} does not support gradient checkpointing: "
                        "score without --score-checkpointing")
    was_on = bool(getattr(model, "is_activation_checkpointing", getattr(model, "is_gradient_checkpointing", False)))
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": True})
    else:  # older transformers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    for layer in layers:
        layer.training = True  # the layer module only: its dropout / attention children stay in eval
    try:
        yield
    finally:
        if not was_on:
            disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
            disable()


@contextmanager
def input_grads(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """The input embeddings' output requires grad inside, so backward reaches every layer even
    when no parameter before a site requires grad (and reentrant checkpoints see a grad input)."""
    if not enabled:
        yield
        return

    def needs_grad(module: nn.Module, args: Any, output: Any) -> Any:
        if torch.is_tensor(output) and torch.is_grad_enabled() and not output.requires_grad:
            return output.detach().requires_grad_(True)
        return output

    handle = model.get_input_embeddings().register_forward_hook(needs_grad)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """No parameter requires grad, eval mode, embeddings' output requires grad; all restored after."""
    flags = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    try:
        with input_grads(model):
            yield
    finally:
        for p, flag, grad in flags:
            p.requires_grad_(flag)
            p.grad = grad
        for module, training in modes:
            module.training = training
