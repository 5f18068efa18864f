"""Example elements of this kind for the contract suite (``tests/test_contracts.py``).

The suite reads ``CASES`` (case name -> elements of one allocation) and ``SPACE_SECTION`` (the
kind's search-space section it scores) of every registered kind, so a kind is held to every
contract by adding this file next to it. The model is the suite's tiny random BERT: 2 layers,
hidden 32 (q/k/v/o: 32 -> 32, ffn_in: 32 -> 64, ffn_out: 64 -> 32).
"""

from __future__ import annotations

from typing import Any

from heterosearch.adapters.shortcut.config import ShortcutElement, candidates

# Every candidate of the 2-layer model, ranks alternating 1, 2.
CASES: dict[str, tuple[ShortcutElement, ...]] = {
    "shortcut": tuple(ShortcutElement(layer, ctype, 1 + i % 2) for i, (layer, ctype) in enumerate(candidates(2))),
}
SPACE_SECTION: dict[str, Any] = {"ranks": [1, 2]}
