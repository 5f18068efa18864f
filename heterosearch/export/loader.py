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
    from heterosearch.export.allocation_file import read_allocation
    from heterosearch.models import discover_sites

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    alloc_file = path if path.is_file() else folder / "allocation.json"
    allocation, data = read_allocation(alloc_file)
    sites = discover_sites(model)
    apply_allocation(model, sites, allocation, float(data.get("scaling", 2.0)), seed=seed)
    weights = folder / WEIGHTS_FILE
    if weights.is_file():
        from safetensors.torch import load_file

        tensors = load_file(str(weights))
        own = dict(model.named_parameters())
        own.update(dict(model.named_buffers()))
        missing = sorted(set(tensors) - set(own))
        if missing:
            raise UserError(f"{weights} holds tensors the rebuilt model lacks, e.g. {missing[0]}")
        import torch

        with torch.no_grad():
            for name, t in tensors.items():
                if own[name].shape != t.shape:
                    raise UserError(f"{weights}: {name} has shape {tuple(t.shape)}, the rebuilt model {tuple(own[name].shape)}")
                own[name].copy_(t)
    return model
