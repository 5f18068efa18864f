"""A shortcut element: one LoRA-adapted shortcut connection of one layer (HeteroLoRA).

HeteroLoRA (arXiv 2406.14956; methods.md section 2) adds, per layer l, up to four candidate
connections, each a frozen square map S (identity or zero) plus a trainable rank-r term:

    residual_1    S = I around the self-attention of layer l       source x_l, joins the attention residual
    residual_2    S = I around the feed-forward block of layer l   source h_l, joins the FFN residual
    shortcut_sa   S = 0, input of layer l -> output of its FFN     source x_l, joins the FFN residual
    shortcut_ffn  S = 0, FFN input of l-1 -> FFN input of l        source h_{l-1}, joins the attention residual

x_l is the layer input and h_l the residual stream entering layer l's feed-forward block.
Layer 0 has no shortcut_ffn, so an L-layer model has 4L - 1 candidates.
Torch-free: the element, its validation, the candidate list, the exact parameter count
(``shortcut_params``) and the ``kinds.shortcut`` section of a space file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.errors import UserError
from heterosearch.models.sites import Site
from heterosearch.space.fields import Where
from heterosearch.space.kinds import SiteLike, check_fields, count_params

PREFIX = "hs_shortcut_"

CTYPES: tuple[str, ...] = ("residual_1", "residual_2", "shortcut_sa", "shortcut_ffn")
"""Connection types in canonical order (the search space's ``shortcut.types``)."""
SHORTCUT_TYPES = CTYPES


def shortcut_params(d: int, rank: int) -> int:
    """One LoRA-adapted shortcut connection (methods.md section 2): A is r x d, B is d x r."""
    return 2 * d * rank

_CTYPE_INDEX = {c: i for i, c in enumerate(CTYPES)}

WIRING: dict[str, tuple[str, int, str]] = {
    # ctype: (source tensor, source layer offset, add point). x = layer input, h = FFN block input.
    "residual_1": ("x", 0, "attn"),
    "residual_2": ("h", 0, "ffn"),
    "shortcut_sa": ("x", 0, "ffn"),
    "shortcut_ffn": ("h", -1, "attn"),
}
"""Where each connection type reads (x_l, h_l or h_{l-1}) and where it adds (attention or FFN residual)."""


@dataclass(frozen=True)
class ShortcutElement:
    """One adapted connection: ``ctype`` of ``layer`` with a rank-``rank`` trainable term."""

    layer: int  # layer index l (>= 0; >= 1 for shortcut_ffn, whose source is layer l-1)
    ctype: str  # one of CTYPES
    rank: int  # rank r of the term s * B A (>= 1)

    def __post_init__(self) -> None:
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 0:
            raise ValueError(f"ShortcutElement.layer must be an int >= 0; got {self.layer!r}")
        if self.ctype not in _CTYPE_INDEX:
            raise ValueError(f"ShortcutElement.ctype must be one of {', '.join(CTYPES)}; got {self.ctype!r}")
        if self.ctype == "shortcut_ffn" and self.layer < 1:
            raise ValueError("ShortcutElement.layer must be >= 1 for shortcut_ffn (its source is layer l-1); got 0")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"ShortcutElement.rank must be an int >= 1; got {self.rank!r}")

    @property
    def key(self) -> str:
        """Readable id used in allocations, scores and reports, e.g. ``"L3.residual_1"``."""
        return f"L{self.layer}.{self.ctype}"

    @property
    def slot(self) -> tuple[int, str]:
        """(layer, ctype): the candidate this element fills."""
        return (self.layer, self.ctype)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"layer", "ctype", "rank"}``."""
        return {"layer": self.layer, "ctype": self.ctype, "rank": self.rank}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShortcutElement:
        """Inverse of ``to_dict``; unknown or missing fields raise ValueError."""
        check_fields("ShortcutElement", data, {"layer", "ctype", "rank"})
        return cls(layer=data["layer"], ctype=data["ctype"], rank=data["rank"])

    def params(self, sites: Mapping[str, SiteLike]) -> int:
        """2 d r (``shortcut_params``), d = hidden size; nothing is shared."""
        hidden = next((s.d_out for s in sites.values() if s.role == "o"), None)
        if hidden is None:
            raise UserError("shortcuts need the attention output projection ('o' sites) to know the hidden size")
        return shortcut_params(hidden, self.rank)

    @staticmethod
    def report_lines(elements: Sequence[ShortcutElement]) -> list[str]:
        """One line per connection type, its layers in order: ``shortcut residual_1: L0=2 L3=4``."""
        by_type: dict[str, list[str]] = {}
        for e in sorted(elements, key=lambda e: e.layer):
            by_type.setdefault(e.ctype, []).append(f"L{e.layer}={e.rank}")
        return [f"shortcut {ctype}: {' '.join(parts)}" for ctype, parts in by_type.items()]


def candidate_key(layer: int, ctype: str) -> str:
    """``"L3.residual_1"`` for (3, "residual_1"), as ``ShortcutElement.key``."""
    return f"L{layer}.{ctype}"


def candidates(num_layers: int) -> list[tuple[int, str]]:
    """Every (layer, ctype) candidate in canonical order: 4 L - 1 of them (no shortcut_ffn at layer 0)."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
        raise ValueError(f"num_layers must be an int >= 0; got {num_layers!r}")
    return [(i, c) for i in range(num_layers) for c in CTYPES if not (c == "shortcut_ffn" and i == 0)]


def sort_key(element: ShortcutElement) -> tuple[int, int]:
    """(layer, position of ctype in CTYPES): the canonical element order."""
    return (element.layer, _CTYPE_INDEX[element.ctype])


def hidden_size(sites: Sequence[Site]) -> int:
    """d, the width of the residual stream: the output width of the attention output projection."""
    for s in sites:
        if s.role == "o":
            return s.d_out
    raise ValueError("shortcuts need the attention output projection ('o' sites) to find the hidden size")


def check_elements(sites: Sequence[Site], elements: Sequence[ShortcutElement]) -> None:
    """Every element names an existing layer, and each (layer, ctype) at most once."""
    n_layers = max((s.layer for s in sites), default=-1) + 1
    seen: set[tuple[int, str]] = set()
    for e in elements:
        if not isinstance(e, ShortcutElement):
            raise TypeError(f"expected ShortcutElement, got {type(e).__name__}")
        if e.layer >= n_layers:
            raise ValueError(f"{e.key}: the model has {n_layers} layers (0..{n_layers - 1})")
        if e.slot in seen:
            raise ValueError(f"{e.key} is given twice")
        seen.add(e.slot)


def shortcut_count(sites: Sequence[Site], elements: Sequence[ShortcutElement]) -> int:
    """Exact trainable parameters of ``elements``: 2 d r each (nothing is shared)."""
    check_elements(sites, elements)
    hidden_size(sites)
    return count_params(elements, {s.key: s for s in sites})


@dataclass(frozen=True)
class ShortcutSpace:
    """HeteroLoRA's LoRA-adapted shortcut connections: one rank per (layer, type); 0 = off."""

    types: tuple[str, ...] = CTYPES
    ranks: tuple[int, ...] = (0, 2, 4, 8)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Where, path: str) -> ShortcutSpace:
        where.check_keys(path, data, ("types", "ranks"), required=("ranks",))
        ranks = where.int_list(f"{path}.ranks", data["ranks"])
        return cls(types=where.choices(f"{path}.types", data.get("types", list(CTYPES)), CTYPES), ranks=(0, *[r for r in ranks if r]))
