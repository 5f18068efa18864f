"""heterosearch: search where LoRA's trainable parameters go, under a hard budget.

Heavy libraries (torch, transformers, peft, optuna) are imported lazily so that
``heterosearch --help`` stays instant.
"""

from __future__ import annotations

from typing import Any

# The adapter kinds register themselves on import (torch-free: their layers load on first use),
# so the space and allocation registries (space/kinds.py) are full whatever module is imported first.
import heterosearch.adapters  # noqa: E402, F401
from heterosearch.version import __version__

__all__ = ["__version__", "SearchResult", "load", "load_adapters", "merge_and_unload", "search", "verify"]


def __getattr__(name: str) -> Any:
    # The API module imports nothing heavy at module level, but keep `import heterosearch` minimal.
    if name in ("search", "verify", "load", "merge_and_unload", "SearchResult"):
        from heterosearch import api

        return getattr(api, name)
    raise AttributeError(f"module 'heterosearch' has no attribute {name!r}")


def load_adapters(model: Any, path: Any, seed: int = 0) -> Any:
    """Re-apply an exported allocation (and trained weights if present) to ``model``; see export.loader."""
    from heterosearch.export.loader import load_adapters as _load

    return _load(model, path, seed=seed)
