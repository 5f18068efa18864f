"""Save trained adapters and rebuild them on a fresh base model: ``heterosearch.load_adapters``.

PEFT cannot express tied banks, shard pools or shortcuts, and tying done after
``get_peft_model`` is lost on save (libraries.md). heterosearch therefore records every
element in ``allocation.json`` and re-applies it on load, shared tensors included, then loads
the trained tensors from ``adapter_model.safetensors`` (adapter parameters, adapter buffers
such as MoS shard indices, and the task head).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heterosearch.errors import UserError

WEIGHTS_FILE = "adapter_model.safetensors"


def save_adapters(model: Any, out_dir: Path) -> Path:
    """Write the adapter tensors (each shared tensor once) atomically as safetensors."""
    import os
    import tempfile

    from safetensors.torch import save_file

    from heterosearch.adapters.inject import adapter_state_dict
    from heterosearch.export.files import publish

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{WEIGHTS_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(adapter_state_dict(model), tmp)
        publish(tmp, out_dir / WEIGHTS_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_dir / WEIGHTS_FILE


def load_adapters(model: Any, path: str | Path, seed: int = 0) -> Any:
    """Re-apply the allocation in ``path`` (a run/export folder or its allocation.json) to ``model``.

    Ties and pools are rebuilt from the allocation; if ``adapter_model.safetensors`` sits next
    to it, the trained tensors are loaded (strictly: every saved tensor must find its place).
    Returns the model, adapted in place, with only adapters and head trainable.
    """

    from heterosearch.adapters import apply_allocation
    from heterosearch.export.allocation_file import allocation_scale, read_allocation
    from heterosearch.models import discover_sites

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    alloc_file = path if path.is_file() else folder / "allocation.json"
    allocation, data = read_allocation(alloc_file)
    try:
        scaling = allocation_scale(data)
    except (TypeError, ValueError, OverflowError) as e:
        field = "scale" if "scale" in data else "scaling"
        raise UserError(f"{alloc_file}: field {field!r} must be a LoRA scale (alpha a finite number in (0, 1e4]), "
                        f"got {_short(data.get(field))}: {_short(str(e), 120)}") from None
    space = data.get("space")
    patterns = space.get("roles") if isinstance(space, dict) else None  # a space's roles: mapping, if it had one
    if patterns is not None and not isinstance(patterns, dict):
        raise UserError(f"{alloc_file}: field 'space.roles' must map roles to module-name patterns, got {_short(patterns)}")
    sites = discover_sites(model, patterns, f"{alloc_file}: space.roles")
    _check_size(allocation, sites, model, alloc_file)  # before any adapter tensor is made
    weights = folder / WEIGHTS_FILE
    header = _read_header(weights) if weights.is_file() else None
    apply_allocation(model, sites, allocation, scaling, seed=seed)
    if header is not None:
        _load_weights(model, weights, header)
    return model


def _short(value: Any, limit: int = 60) -> str:
    """A value for an error message, never longer than ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_size(allocation: Any, sites: Any, model: Any, where: Path) -> None:
    """Every LoRA rank within its site's dimensions, and the whole allocation smaller than the model."""
    site_map = {s.key: s for s in sites}
    for key, rank in allocation.lora.items():
        site = site_map.get(key)
        if site is None:
            raise UserError(f"{where}: allocation names site {_short(key)}, which this model does not have")
        if rank > min(site.d_in, site.d_out):
            raise UserError(f"{where}: site {key} has rank {_short(rank)}, above min(d_in, d_out) = "
                            f"{min(site.d_in, site.d_out)} of this model; the file does not belong to this model")
    try:
        total = allocation.params(site_map)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: an allocation element is malformed ({type(exc).__name__}: {_short(str(exc))})") from None
    base = sum(p.numel() for p in model.parameters())
    if total > base:
        raise UserError(f"{where}: the allocation has {total:,} adapter parameters, more than the whole model ({base:,}); "
                        "the file does not belong to this model")


def _read_header(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header, without reading any tensor."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except Exception as exc:  # truncated or not safetensors at all
        raise UserError(f"{weights} is not a readable safetensors file ({type(exc).__name__}: {_short(str(exc))})") from None


def _load_weights(model: Any, weights: Path, header: dict[str, tuple[int, ...]]) -> None:
    """Load only what the allocation implies: adapter tensors and the task head, right shapes, finite values."""
    import torch
    from safetensors import safe_open

    from heterosearch.adapters.inject import ADAPTER_PREFIX, HEAD_NAMES

    own = dict(model.named_parameters())
    own.update(dict(model.named_buffers()))
    for name, shape in header.items():
        parts = name.split(".")
        if not (any(p.startswith(ADAPTER_PREFIX) for p in parts) or parts[0] in HEAD_NAMES):
            raise UserError(f"{weights} holds {_short(name)}, which is neither an adapter tensor nor the task head; "
                            "refusing to overwrite a base-model weight")
        if name not in own:
            raise UserError(f"{weights} holds tensors the rebuilt model lacks, e.g. {_short(name)}")
        if tuple(own[name].shape) != shape:
            raise UserError(f"{weights}: {name} has shape {shape}, the rebuilt model {tuple(own[name].shape)}")
    with safe_open(str(weights), framework="pt") as fh:  # sizes are checked above: these are adapter-sized
        tensors = {name: fh.get_tensor(name) for name in header}
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"{weights}: {name} holds non-finite values")
    with torch.no_grad():
        for name, t in tensors.items():
            own[name].copy_(t)
