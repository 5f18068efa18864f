"""The ``shortcut`` adapter kind: HeteroLoRA's LoRA-adapted shortcut connections, one rank per (layer, type)."""

from heterosearch.adapters.kinds import AdapterKind, lazy_exports, register_kind
from heterosearch.adapters.shortcut.blocks import PLANS, BlockPlan, find_blocks
from heterosearch.adapters.shortcut.config import (
    CTYPES,
    PREFIX,
    ShortcutElement,
    ShortcutSpace,
    candidates,
    shortcut_count,
    shortcut_params,
)

register_kind(
    AdapterKind(
        name="shortcut",
        prefix=PREFIX,
        summary="LoRA-adapted shortcut connections per layer (residual_1/2, shortcut_sa/ffn; HeteroLoRA)",
        apply_order=40,  # last: hooks on whole blocks, around whatever wraps the sites
        element=ShortcutElement,
        section=ShortcutSpace,
        package=__name__,
        apply_name="apply_shortcuts",
    )
)

__all__ = [
    "CTYPES",
    "PLANS",
    "PREFIX",
    "SCALING",
    "SCORING_STATE",
    "BlockPlan",
    "ShortcutElement",
    "ShortcutSpace",
    "ShortcutStore",
    "ShortcutTerm",
    "apply_shortcuts",
    "candidates",
    "find_blocks",
    "remove_shortcuts",
    "shortcut_count",
    "shortcut_gradients",
    "shortcut_params",
    "shortcut_store",
]
__getattr__ = lazy_exports(
    __name__,
    {
        "SCALING": "layer",
        "ShortcutStore": "layer",
        "ShortcutTerm": "layer",
        "apply_shortcuts": "layer",
        "remove_shortcuts": "layer",
        "shortcut_store": "layer",
        "SCORING_STATE": "scoring",
        "shortcut_gradients": "scoring",
    },
)
