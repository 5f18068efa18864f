"""Example elements of this kind for the contract suite (``tests/test_contracts.py``).

The suite reads ``CASES`` (case name -> elements of one allocation) and ``SPACE_SECTION`` (the
kind's search-space section it scores) of every registered kind, so a kind is held to every
contract by adding this file next to it. The model is the suite's tiny random BERT: 2 layers,
hidden 32 (q/k/v/o: 32 -> 32, ffn_in: 32 -> 64, ffn_out: 64 -> 32).
"""

from __future__ import annotations

from typing import Any

from heterosearch.adapters.mos.config import MosElement

CASES: dict[str, tuple[MosElement, ...]] = {
    "mos": (
        MosElement("v", r_e=2, shards=2, r_p=1, ranks={0: 3, 1: 2}),
        MosElement("ffn_in", r_e=1, shards=4, r_p=0, ranks={0: 2, 1: 1}),
    ),
}
SPACE_SECTION: dict[str, Any] = {
    "roles": ["v", "ffn_in"], "equivalent_ranks": [1, 2], "site_ranks": [1, 2], "shards": 2, "private_rank": 1,
}
