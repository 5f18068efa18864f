"""Example elements of this kind for the contract suite (``tests/test_contracts.py``).

The suite reads ``CASES`` (case name -> elements of one allocation) and ``SPACE_SECTION`` (the
kind's search-space section it scores) of every registered kind, so a kind is held to every
contract by adding this file next to it. The model is the suite's tiny random BERT: 2 layers,
hidden 32 (q/k/v/o: 32 -> 32, ffn_in: 32 -> 64, ffn_out: 64 -> 32).
"""

from __future__ import annotations

from typing import Any

from heterosearch.adapters.lora.config import LoraElement

CASES: dict[str, tuple[LoraElement, ...]] = {
    "lora": (LoraElement("L0.q", 2), LoraElement("L0.ffn_in", 3), LoraElement("L1.v", 1), LoraElement("L1.ffn_out", 4)),
}
SPACE_SECTION: dict[str, Any] = {"roles": ["q", "k", "v", "o", "ffn_in", "ffn_out"], "ranks": [0, 1, 2, 4]}
