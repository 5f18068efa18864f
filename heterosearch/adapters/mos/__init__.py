"""The ``mos`` adapter kind: Mixture of Shards, per-site LoRA built from one shard pool per role."""

from heterosearch.adapters.kinds import AdapterKind, lazy_exports, register_kind
from heterosearch.adapters.mos.config import PREFIX, MosElement, MosSpace, member_sites, mos_params, mos_valid

register_kind(
    AdapterKind(
        name="mos",
        prefix=PREFIX,
        summary="Mixture of Shards: per-site ranks built from one shard pool per role (rank free, pool r_e costs)",
        apply_order=20,  # after banks, before per-site LoRA: pools wrap the frozen sites
        element=MosElement,
        section=MosSpace,
        package=__name__,
        apply_name="apply_mos",
    )
)

__all__ = [
    "PREFIX",
    "SCALING",
    "MosElement",
    "MosLinear",
    "MosPool",
    "MosSpace",
    "apply_mos",
    "member_sites",
    "mos_params",
    "mos_spectral",
    "mos_valid",
]
__getattr__ = lazy_exports(
    __name__,
    {"SCALING": "layer", "MosLinear": "layer", "MosPool": "layer", "apply_mos": "layer", "mos_spectral": "scoring"},
)
