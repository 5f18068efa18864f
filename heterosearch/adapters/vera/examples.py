"""Example elements of this kind for the contract suite (``tests/test_contracts.py``); tiny BERT, hidden 32."""

from __future__ import annotations

from typing import Any

from heterosearch.adapters.vera.config import VeraElement

# Two sites of one shape share one frozen pair; ffn_in (32 -> 64) gets its own.
CASES: dict[str, tuple[VeraElement, ...]] = {
    "vera": (VeraElement("L0.v", 4), VeraElement("L1.v", 4), VeraElement("L1.ffn_in", 4)),
}
SPACE_SECTION: dict[str, Any] = {"roles": ["v", "ffn_in"], "rank": 4}
