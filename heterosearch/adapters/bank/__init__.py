"""The ``bank`` adapter kind: one low-rank pair shared by one role's sites across layers (ShareLoRA, Tied-LoRA)."""

from heterosearch.adapters.bank.config import (
    MEMBERSHIPS,
    PREFIX,
    VARIANTS,
    BankElement,
    BankSpace,
    bank_params,
    member_sites,
    membership_layers,
)
from heterosearch.adapters.kinds import AdapterKind, lazy_exports, register_kind

register_kind(
    AdapterKind(
        name="bank",
        prefix=PREFIX,
        summary="one low-rank pair shared by one role across layers (share_a/share_b/share_ab, Tied-LoRA tl5/tl6)",
        apply_order=10,  # first: banks wrap the frozen sites
        element=BankElement,
        section=BankSpace,
        package=__name__,
        apply_name="apply_banks",
    )
)

__all__ = [
    "MEMBERSHIPS",
    "PREFIX",
    "SCALING",
    "VARIANTS",
    "BankElement",
    "BankLinear",
    "BankShared",
    "BankSpace",
    "apply_banks",
    "bank_params",
    "bank_spectral",
    "member_sites",
    "membership_layers",
]
__getattr__ = lazy_exports(
    __name__,
    {"SCALING": "layer", "BankLinear": "layer", "BankShared": "layer", "apply_banks": "layer", "bank_spectral": "scoring"},
)
