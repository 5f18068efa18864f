"""Search spaces (YAML -> dataclasses), allocations and their parameter counts. Torch-free.

Each adapter kind brings its own section, element and formula (``adapters/<kind>/config.py``)
and registers them in ``space.kinds.SECTIONS``; space/ itself names no kind.
"""

from heterosearch.space.budget import format_params, lora_params, parse_budget
from heterosearch.space.config import (
    KNOWN_ROLES,
    BaselineSpec,
    SearchSpace,
    available_spaces,
    load_space,
    spaces_dir,
)

__all__ = [
    "KNOWN_ROLES",
    "BaselineSpec",
    "SearchSpace",
    "available_spaces",
    "format_params",
    "load_space",
    "lora_params",
    "parse_budget",
    "spaces_dir",
]
