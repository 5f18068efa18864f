"""heterosearch: search where LoRA's trainable parameters go, under a hard budget.

Heavy libraries (torch, transformers, peft, optuna) are imported lazily so that
``heterosearch --help`` stays instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_adapters"]


def load_adapters(model: Any, path: Any, seed: int = 0) -> Any:
    """Re-apply an exported allocation (and trained weights if present) to ``model``; see export.loader."""
    from heterosearch.export.loader import load_adapters as _load

    return _load(model, path, seed=seed)
