"""Example elements of this kind for the contract suite (``tests/test_contracts.py``).

The suite reads ``CASES`` (case name -> elements of one allocation) and ``SPACE_SECTION`` (the
kind's search-space section it scores) of every registered kind, so a kind is held to every
contract by adding this file next to it. The model is the suite's tiny random BERT: 2 layers,
hidden 32 (q/k/v/o: 32 -> 32, ffn_in: 32 -> 64, ffn_out: 64 -> 32).
"""

from __future__ import annotations

from typing import Any

from heterosearch.adapters.bank.config import VARIANTS, BankElement

# Variants sit on non-square roles where A and B differ in shape, so a transposed shared tensor shows.
_ON = {"share_a": ("ffn_in", 2), "share_b": ("ffn_out", 2), "share_ab": ("v", 2), "tl5": ("q", 3), "tl6": ("ffn_in", 2)}
CASES: dict[str, tuple[BankElement, ...]] = {f"bank-{v}": (BankElement(_ON[v][0], (0, 1), _ON[v][1], v),) for v in VARIANTS}
SPACE_SECTION: dict[str, Any] = {"roles": ["v", "ffn_in"], "ranks": [1, 2], "membership": ["all"]}
