"""The ``mos`` adapter kind: Mixture of Shards, per-site LoRA built from one shard pool per role."""

from heterosearch.adapters.kinds import ADAPTER_KINDS, AdapterKind
from heterosearch.adapters.mos.config import MosElement, member_sites, mos_count
from heterosearch.adapters.mos.layer import PREFIX, SCALING, MosLinear, MosPool, apply_mos
from heterosearch.adapters.mos.scoring import mos_spectral

ADAPTER_KINDS.add(
    "mos",
    AdapterKind(
        name="mos",
        prefix=PREFIX,
        summary="Mixture of Shards: per-site ranks built from one shard pool per role (rank free, pool r_e costs)",
        element=MosElement,
        apply=apply_mos,
        params=mos_count,
    ),
)

__all__ = [
    "PREFIX",
    "SCALING",
    "MosElement",
    "MosLinear",
    "MosPool",
    "apply_mos",
    "member_sites",
    "mos_count",
    "mos_spectral",
]
