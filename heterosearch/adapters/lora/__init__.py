"""The ``lora`` adapter kind: one rank per site."""

from heterosearch.adapters.lora.layer import PREFIX, LoraLinear

__all__ = ["PREFIX", "LoraLinear"]
