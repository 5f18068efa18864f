"""Adapter kinds (one package each) and their injection into a model."""

from heterosearch.adapters import bank, mos  # noqa: F401 - importing a kind's package registers it
from heterosearch.adapters import shortcut  # noqa: F401 - registers the "shortcut" kind
from heterosearch.adapters.inject import (
    ADAPTER_PREFIX,
    adapter_parameters,
    adapter_state_dict,
    apply_allocation,
    count_adapter_params,
    head_parameters,
)

__all__ = [
    "ADAPTER_PREFIX",
    "adapter_parameters",
    "adapter_state_dict",
    "apply_allocation",
    "count_adapter_params",
    "head_parameters",
]
