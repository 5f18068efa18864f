"""Budget parsing and the per-site LoRA formula (torch-free).

Each other kind keeps its formula with its element (``adapters/<kind>/config.py``); LoRA's
lives here because space/ itself uses it (uniform allocations, ``allocation.py``).

Budget convention (README "How the budget is counted"): the budget counts adapter
parameters only, a tensor shared by several sites counts once, and the task head
(classifier) is reported separately and never charged to the budget.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, localcontext

from heterosearch.errors import UserError

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "b": 1_000_000_000}
_BUDGET_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)\s*$", re.IGNORECASE)


def parse_budget(text: str | int | float) -> int:
    """Parse ``500000``, ``500k``, ``0.5M``, ``1.2e6`` into a positive int of parameters."""
    if isinstance(text, bool):
        raise UserError(f"budget must be a number of parameters, got {text!r}")
    value: float | Decimal
    if isinstance(text, int):
        value = Decimal(text)  # exact, and no OverflowError for huge ints
    elif isinstance(text, float):
        value = text
    else:
        cleaned = str(text).replace("_", "").replace(",", "")
        if _BUDGET_RE.match(cleaned.strip().lstrip("-")) and cleaned.strip().startswith("-"):
            raise UserError(f"budget must be a positive number of parameters, got {text!r} (e.g. --budget 0.5M)")
        m = _BUDGET_RE.match(cleaned)
        if not m:
            raise UserError(
                f"budget {text!r} is not a number of parameters (examples: 500000, 500k, 0.5M, 1.2e6)"
            )
        # Decimal, not float: "0.001002M" is exactly 1002, but float("0.001002") * 1e6 is not whole.
        mantissa = Decimal(m.group(1))
        if abs(mantissa.adjusted()) > 30:  # far outside any budget (and no huge Decimal exponents)
            raise UserError(f"budget {text!r} is not a usable number of parameters")
        with localcontext() as ctx:
            ctx.prec = len(m.group(1)) + 20  # exact: no rounding of long mantissas
            value = mantissa * _SUFFIX[m.group(2).lower()]
    finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
    if not finite or value <= 0:
        raise UserError(f"budget must be a positive number of parameters, got {text!r} (e.g. --budget 0.5M)")
    if value != math.floor(value):
        raise UserError(f"budget {text!r} is not a whole number of parameters ({float(value):.15g})")
    if value > 10**13:
        raise UserError(f"budget {text!r} is larger than any model heterosearch can adapt")
    return int(value)


def format_params(n: int) -> str:
    """``497664`` -> ``'497,664'`` (exact counts are always shown in full)."""
    return f"{n:,}"


def lora_params(d_in: int, d_out: int, rank: int) -> int:
    """LoRA on one site: A is r x d_in, B is d_out x r (methods.md section 1)."""
    return rank * (d_in + d_out)
