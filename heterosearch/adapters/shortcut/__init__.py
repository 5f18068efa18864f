"""The ``shortcut`` adapter kind: HeteroLoRA's LoRA-adapted shortcut connections, one rank per (layer, type)."""

from heterosearch.adapters.kinds import ADAPTER_KINDS, AdapterKind
from heterosearch.adapters.shortcut.blocks import PLANS, BlockPlan, find_blocks
from heterosearch.adapters.shortcut.config import CTYPES, ShortcutElement, candidates, shortcut_count
from heterosearch.adapters.shortcut.layer import (
    PREFIX,
    SCALING,
    ShortcutStore,
    ShortcutTerm,
    apply_shortcuts,
    remove_shortcuts,
    shortcut_store,
)
from heterosearch.adapters.shortcut.scoring import SCORING_STATE, shortcut_gradients

ADAPTER_KINDS.add(
    "shortcut",
    AdapterKind(
        name="shortcut",
        prefix=PREFIX,
        summary="LoRA-adapted shortcut connections per layer (residual_1/2, shortcut_sa/ffn; HeteroLoRA)",
        element=ShortcutElement,
        apply=apply_shortcuts,
        params=shortcut_count,
    ),
)

__all__ = [
    "CTYPES",
    "PLANS",
    "PREFIX",
    "SCALING",
    "SCORING_STATE",
    "BlockPlan",
    "ShortcutElement",
    "ShortcutStore",
    "ShortcutTerm",
    "apply_shortcuts",
    "candidates",
    "find_blocks",
    "remove_shortcuts",
    "shortcut_count",
    "shortcut_gradients",
    "shortcut_store",
]
