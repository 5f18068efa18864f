"""Adapter kinds (one package each) and their injection into a model."""

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
