"""The ``lora`` adapter kind: one rank per site."""

from heterosearch.adapters.lora.layer import PREFIX, LoraLinear
from heterosearch.space.scale import RULES, LoraScale, as_scale

__all__ = ["PREFIX", "RULES", "LoraLinear", "LoraScale", "as_scale"]
