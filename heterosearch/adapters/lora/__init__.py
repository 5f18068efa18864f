"""The ``lora`` adapter kind: one rank per site (Hu et al. 2021)."""

from heterosearch.adapters.kinds import AdapterKind, lazy_exports, register_kind
from heterosearch.adapters.lora.config import PREFIX, LoraElement, LoraSpace
from heterosearch.space.scale import RULES, LoraScale, as_scale

register_kind(
    AdapterKind(
        name="lora",
        prefix=PREFIX,
        summary="per-site LoRA, one rank per site",
        apply_order=30,  # after banks and pools (it wraps whatever is at the site), before shortcuts
        element=LoraElement,
        section=LoraSpace,
        package=__name__,
        apply_name="apply_lora",
    )
)

__all__ = ["PREFIX", "RULES", "LoraElement", "LoraLinear", "LoraScale", "LoraSpace", "apply_lora", "as_scale", "set_lora_dropout"]
__getattr__ = lazy_exports(__name__, {"LoraLinear": "layer", "apply_lora": "layer", "set_lora_dropout": "layer"})
