"""Helpers shared by the kinds whose tensors span layers (bank, mos): member sites and their gradients, module swap."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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


def member_grads(G_by_site: Mapping[str, Any], element: Any) -> list[Any]:  # noqa: N803
    """G of each member site of ``element`` (its ``role`` in its ``layers``), in layer order; all must be there."""
    keys = [f"L{i}.{element.role}" for i in element.layers]
    missing = [k for k in keys if k not in G_by_site]
    if missing:
        raise ValueError(f"{element.key}: no gradient for member sites {', '.join(missing)}")
    return [G_by_site[k] for k in keys]


def role_spectral(groups: Sequence[Any], value: Callable[[Mapping[str, Any], Any], float],
                  grads: Mapping[str, Mapping[str, Any]], proxies: Sequence[str]) -> dict[str, Any]:
    """{"spectral": {role: {option label: value(G by site, element)}}} over role groups (their "off" skipped).

    G from the base model's data gradients (``grads["data"]``); {} when ``spectral`` is not asked for.
    Streaming scoring never forms G: then each site's top singular values (``grads["sigma"]``,
    1-D) stand in for it, which only a ``value`` that needs no more than them may accept (MoS);
    banks need more and read their own sketches instead (``adapters/bank/scoring.py``).
    """
    if "spectral" not in proxies:
        return {}
    data_G = grads.get("data") or grads.get("sigma", {})  # noqa: N806
    return {"spectral": {g.target: {o.label: value(data_G, o.elements[0]) for o in g.options[1:]} for g in groups}}
