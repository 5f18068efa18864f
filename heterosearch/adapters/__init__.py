"""Adapter kinds (one package each, found here) and their injection into a model.

Every sub-package of ``heterosearch/adapters/`` is an adapter kind and is imported here, which
registers it (``kinds.register_kind`` in its ``__init__.py``): adding a kind adds a folder and
touches nothing else. Importing this package is torch-free; the injection helpers below are
imported from ``inject.py`` on first use.
"""

from __future__ import annotations

import importlib
import pkgutil

from heterosearch.adapters.kinds import lazy_exports

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.ispkg and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "ADAPTER_PREFIX",
    "adapter_parameters",
    "adapter_state_dict",
    "apply_allocation",
    "count_adapter_params",
    "head_parameters",
]

__getattr__ = lazy_exports(__name__, {name: "inject" for name in __all__})
