"""Per-site LoRA's scores are the per-site curves (``proxies/scoring.py``, ``Scores.curves``).

Every proxy is defined for LoRA sites (the proxies are written for them), so nothing is
undefined and no extra pass is needed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

UNDEFINED: dict[str, str] = {}


def score(model: Any, sites: Sequence[Any], batches: Sequence[Any], section: Any, grads: Any,
          proxies: Sequence[str], seed: int, scale: Any = None) -> dict[str, Any]:
    """Nothing beyond ``Scores.curves``: {} (``proxies.kinds.score_kinds`` stores no per-kind values)."""
    return {}
