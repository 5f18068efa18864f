"""Export the LoRA part of an allocation as a PEFT ``LoraConfig`` (``adapter_config.json``).

PEFT matches ``rank_pattern`` keys as regexes against a dot-bounded suffix of the module
name and the *first* matching key wins; ``save_pretrained`` sorts the keys, so overlapping
patterns can reload with other ranks than were trained (libraries.md). We therefore write
one exact, anchored key per site (``"^" + re.escape(full_module_name)``) and list the full
module names in ``target_modules``, which PEFT matches exactly.
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from heterosearch.space.allocation import Allocation
from heterosearch.space.scale import LoraScale, as_scale


def lora_config(
    allocation: Allocation,
    sites: Mapping[str, Any],
    scale: LoraScale | float,
    base_model: str | None = None,
    task_type: str | None = "SEQ_CLS",
    relative_to: str | None = None,
    modules_to_save: list[str] | None = None,
    lora_dropout: float = 0.0,
) -> Any:
    """A ``peft.LoraConfig`` that builds exactly the LoRA adapters of ``allocation``.

    ``scale``: the scale rule; rslora maps to ``use_rslora=True`` with one ``lora_alpha``, the
    ``ratio`` rule to one ``alpha_pattern`` key per module (a bare number: ratio).
    ``relative_to``: None writes full module names with anchored keys (``^`` + the escaped full name);
    a base-model prefix (``"bert"``) writes names relative to the backbone with suffix-matched
    keys, which match from the task wrapper and from the bare backbone (export/peft_native.py).
    ``lora_dropout``: the run's training dropout, so that PEFT users who continue training train as it did.
    """
    from peft import LoraConfig

    if not allocation.lora:
        raise ValueError("allocation has no LoRA sites to export")
    names = {relative_name(sites[k].name, relative_to or ""): r for k, r in allocation.lora.items()}
    default_r = collections.Counter(names.values()).most_common(1)[0][0]
    conv1d = any(sites[k].conv1d for k in allocation.lora)
    anchor = "" if relative_to is not None else "^"
    patterns = {anchor + re.escape(n): r for n, r in sorted(names.items())}
    return LoraConfig(
        r=default_r,
        target_modules=sorted(names),
        rank_pattern=patterns,
        **as_scale(scale).peft_kwargs(patterns, default_r),
        lora_dropout=float(lora_dropout),
        bias="none",
        fan_in_fan_out=conv1d,
        modules_to_save=modules_to_save or None,
        task_type=task_type,
        base_model_name_or_path=base_model,
    )


def relative_name(name: str, prefix: str) -> str:
    """``bert.encoder.layer.0...`` -> ``encoder.layer.0...`` (``prefix``: the model's base_model_prefix)."""
    return name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else name


def save_lora_config(config: Any, out_dir: Path) -> Path:
    """``save_pretrained`` into a temp folder, then rename: never a half-written config.

    PEFT turns ``target_modules`` into a set and writes it in set order, which changes with
    Python's hash seed from process to process; the file is rewritten with every list sorted
    and keys in a fixed order, so the same allocation always gives the same bytes.
    """
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".peft-") as tmp:
        config.save_pretrained(tmp)
        path = Path(tmp) / "adapter_config.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data.get("target_modules"), list):
            data["target_modules"] = sorted(data["target_modules"])
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(path, out_dir / "adapter_config.json")
    return out_dir / "adapter_config.json"


def peft_adapter_params(peft_model: Any) -> int:
    """LoRA parameters of a PEFT model (the task head, in modules_to_save, is excluded)."""
    return sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)


def check_peft_roundtrip(
    model_loader: Any, config_dir: Path, expected_params: int, expected_ranks: Mapping[str, int] | None = None
) -> int:
    """Load ``adapter_config.json`` with PEFT onto a fresh base model; return its adapter count.

    ``expected_ranks`` (module name -> rank), when given, is checked site by site, so two sites
    of the same size with swapped ranks cannot pass on the total alone.
    """
    import warnings

    from peft import PeftConfig, get_peft_model

    config = PeftConfig.from_pretrained(str(config_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # base_model_name_or_path / deprecation chatter
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("error", RuntimeWarning)  # a key that matches nothing is an error here
        peft_model = get_peft_model(model_loader(), config)
    n = peft_adapter_params(peft_model)
    if expected_ranks:
        for name, module in peft_model.base_model.model.named_modules():
            if name in expected_ranks:
                got = module.lora_A["default"].weight.shape[0]
                if got != expected_ranks[name]:
                    raise AssertionError(f"PEFT built {name} at rank {got}, expected {expected_ranks[name]}")
    if n != expected_params:
        raise AssertionError(f"PEFT built {n:,} adapter parameters from {config_dir}, expected {expected_params:,}")
    return n
