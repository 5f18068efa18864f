"""Search spaces (YAML -> dataclasses) and the parameter-count formulas. Torch-free."""

from heterosearch.space.budget import format_params, lora_params, parse_budget
from heterosearch.space.config import (
    KNOWN_ROLES,
    BaselineSpec,
    LoraSpace,
    SearchSpace,
    available_spaces,
    load_space,
    spaces_dir,
)

__all__ = [
    "KNOWN_ROLES",
    "BaselineSpec",
    "LoraSpace",
    "SearchSpace",
    "available_spaces",
    "format_params",
    "load_space",
    "lora_params",
    "parse_budget",
    "spaces_dir",
]
