"""Helpers shared by the kinds whose tensors span layers (bank, mos): member sites, module swap."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from heterosearch.models.sites import Site


def role_members(sites: Sequence[Site], role: str, layers: Iterable[int], what: str) -> list[Site]:
    """The ``role`` sites of ``layers`` in that order; all must exist and share (d_in, d_out).

    ``what`` names the element in error messages (e.g. ``"bank.v.share_a"``).
    """
    by_slot = {(s.layer, s.role): s for s in sites}
    layers = list(layers)
    missing = [f"L{i}.{role}" for i in layers if (i, role) not in by_slot]
    if missing:
        raise ValueError(f"{what}: the model has no site {', '.join(missing)}")
    members = [by_slot[(i, role)] for i in layers]
    shapes = {(s.d_in, s.d_out) for s in members}
    if len(shapes) != 1:
        raise ValueError(f"{what}: member sites differ in (d_in, d_out): {sorted(shapes)}")
    return members


def set_submodule(model: Any, name: str, module: Any) -> None:
    """Replace the submodule at dotted ``name`` by ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
