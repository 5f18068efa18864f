"""A PEFT-native adapter folder for a LoRA-only allocation: ``RUN/adapter/``.

``PeftModel.from_pretrained(base, RUN/adapter)`` and ``AutoPeftModelFor...from_pretrained``
load it as they load any adapter from the hub:

- ``adapter_config.json``: one rank per module, the scale rule as PEFT spells it
  (``use_rslora`` or ``alpha_pattern``), ``base_model_name_or_path`` the model id the user gave
  (or the packaged model's public hub id), never a path on the machine that made it;
- module names *relative* to the backbone (``encoder.layer.0.attention.self.query``, without the
  task wrapper's ``bert.``): PEFT matches ``target_modules`` and pattern keys as dot-bounded
  suffixes, so the same config adapts the task model and the bare ``AutoModel``. The names stay
  unique because each still spells its full path below the backbone;
- ``adapter_model.safetensors`` under PEFT's key names (``base_model.model.<module>.lora_A.weight``,
  the head under ``base_model.model.<head>.weight``), converted from heterosearch's own tensors.

Banks, pools and shortcuts have no PEFT form: for them ``heterosearch.load_adapters`` rebuilds
the model, and ``heterosearch.adapters.merge`` folds the linear ones into the base weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from heterosearch.export.peft_config import relative_name  # noqa: F401  (re-exported: the names PEFT sees)
from heterosearch.space.allocation import Allocation

ADAPTER_DIR = "adapter"
#: The packaged default model's public id (what base_model_name_or_path says for it).
PACKAGED_PUBLIC_ID = "sentence-transformers/all-MiniLM-L6-v2"


def head_modules(model: Any) -> list[str]:
    """The task head's top-level modules that hold trained parameters (PEFT's modules_to_save)."""
    from heterosearch.adapters.inject import head_parameters

    return sorted({name.rsplit(".", 1)[0] for name in head_parameters(model)})


def native_lora_config(allocation: Allocation, sites: Mapping[str, Any], scale: Any, base_model_id: str | None,
                       prefix: str, modules_to_save: list[str] | None = None, task_type: str | None = "SEQ_CLS",
                       lora_dropout: float = 0.0) -> Any:
    """A ``LoraConfig`` with relative module names and unanchored (suffix-matched) pattern keys."""
    from heterosearch.export.peft_config import lora_config

    if not allocation.lora or allocation.elements:
        raise ValueError("a PEFT-native folder needs a LoRA-only allocation")
    return lora_config(allocation, sites, scale, base_model=base_model_id, task_type=task_type, relative_to=prefix,
                       modules_to_save=modules_to_save, lora_dropout=lora_dropout)


def peft_state_dict(model: Any, allocation: Allocation, sites: Mapping[str, Any]) -> dict[str, Any]:
    """heterosearch's adapter and head tensors under PEFT's saved key names (full module names)."""
    from heterosearch.adapters.inject import head_parameters

    out: dict[str, Any] = {}
    for key in allocation.lora:
        module = model.get_submodule(sites[key].name)
        out[f"base_model.model.{sites[key].name}.lora_A.weight"] = module.hs_lora_A.detach().contiguous()  # (r, d_in)
        out[f"base_model.model.{sites[key].name}.lora_B.weight"] = module.hs_lora_B.detach().contiguous()  # (d_out, r)
    for name, p in head_parameters(model).items():
        out[f"base_model.model.{name}"] = p.detach().contiguous()
    return out


def save_peft_adapter(model: Any, allocation: Allocation, sites: Mapping[str, Any], scale: Any, out_dir: Path,
                      base_model_id: str | None, task_type: str | None = "SEQ_CLS", lora_dropout: float = 0.0) -> Path:
    """Write ``out_dir/adapter_config.json`` and ``adapter_model.safetensors`` in PEFT's format, atomically."""
    import os
    import tempfile

    from safetensors.torch import save_file

    from heterosearch.export.files import publish
    from heterosearch.export.peft_config import save_lora_config

    out_dir = Path(out_dir)
    prefix = getattr(model, "base_model_prefix", "") or ""
    config = native_lora_config(allocation, sites, scale, base_model_id, prefix, head_modules(model), task_type, lora_dropout)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".adapter_model.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(peft_state_dict(model, allocation, sites), tmp, metadata={"format": "pt"})
        publish(tmp, out_dir / "adapter_model.safetensors")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    save_lora_config(config, out_dir)
    return out_dir


def public_model_id(user_model: str | None) -> str:
    """What ``base_model_name_or_path`` says: the id or path the user gave, else the packaged model's hub id."""
    return user_model if user_model else PACKAGED_PUBLIC_ID
