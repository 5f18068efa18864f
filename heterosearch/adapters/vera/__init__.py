"""The ``vera`` adapter kind: VeRA, frozen random low-rank pairs shared by shape, trainable per-site scalings."""

from heterosearch.adapters.kinds import AdapterKind, lazy_exports, register_kind
from heterosearch.adapters.vera.config import PREFIX, VeraElement, VeraSpace, vera_params

register_kind(
    AdapterKind(
        name="vera",
        prefix=PREFIX,
        summary="VeRA: frozen random A, B shared by every site of one shape; trainable per-site vectors d, b",
        apply_order=25,  # after banks and pools, before per-site LoRA (which may wrap it)
        element=VeraElement,
        section=VeraSpace,
        package=__name__,
        apply_name="apply_vera",
    )
)

__all__ = ["PREFIX", "VeraElement", "VeraLinear", "VeraSpace", "apply_vera", "vera_params"]
__getattr__ = lazy_exports(__name__, {"VeraLinear": "layer", "apply_vera": "layer"})
