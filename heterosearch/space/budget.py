"""Every parameter-count formula of heterosearch, in one place (torch-free).

Budget convention (README "How the budget is counted"): the budget counts adapter
parameters only, a tensor shared by several sites counts once, and the task head
(classifier) is reported separately and never charged to the budget.
"""

from __future__ import annotations

import math
import re

from heterosearch.errors import UserError

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "b": 1_000_000_000}
_BUDGET_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)\s*$", re.IGNORECASE)


def parse_budget(text: str | int | float) -> int:
    """Parse ``500000``, ``500k``, ``0.5M``, ``1.2e6`` into a positive int of parameters."""
    if isinstance(text, bool):
        raise UserError(f"budget must be a number of parameters, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _BUDGET_RE.match(str(text).replace("_", "").replace(",", ""))
        if not m:
            raise UserError(
                f"budget {text!r} is not a number of parameters (examples: 500000, 500k, 0.5M, 1.2e6)"
            )
        value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"budget must be a positive number of parameters, got {text!r}")
    if value != math.floor(value):
        raise UserError(f"budget {text!r} is not a whole number of parameters ({value:g})")
    if value > 10**13:
        raise UserError(f"budget {text!r} is larger than any model heterosearch can adapt")
    return int(value)


def format_params(n: int) -> str:
    """``497664`` -> ``'497,664'`` (exact counts are always shown in full)."""
    return f"{n:,}"


def lora_params(d_in: int, d_out: int, rank: int) -> int:
    """LoRA on one site: A is r x d_in, B is d_out x r (methods.md section 1)."""
    return rank * (d_in + d_out)
