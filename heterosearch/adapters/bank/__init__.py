"""The ``bank`` adapter kind: one low-rank pair shared by one role's sites across layers (ShareLoRA, Tied-LoRA)."""

from heterosearch.adapters.bank.config import VARIANTS, BankElement, bank_count, member_sites
from heterosearch.adapters.bank.layer import PREFIX, SCALING, BankLinear, BankShared, apply_banks
from heterosearch.adapters.bank.scoring import bank_spectral
from heterosearch.adapters.kinds import ADAPTER_KINDS, AdapterKind

ADAPTER_KINDS.add(
    "bank",
    AdapterKind(
        name="bank",
        prefix=PREFIX,
        summary="one low-rank pair shared by one role across layers (share_a/share_b/share_ab, Tied-LoRA tl5/tl6)",
        element=BankElement,
        apply=apply_banks,
        params=bank_count,
    ),
)

__all__ = [
    "PREFIX",
    "SCALING",
    "VARIANTS",
    "BankElement",
    "BankLinear",
    "BankShared",
    "apply_banks",
    "bank_count",
    "bank_spectral",
    "member_sites",
]
