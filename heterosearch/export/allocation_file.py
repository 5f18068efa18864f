"""``allocation.json``: heterosearch's own record of a chosen allocation.

Schema (format_version 1): format, format_version, model, task, space {name, version},
budget, params (adapter parameters, shared tensors once), head_params (reported, not
charged), proxy, seed, scale {rule, alpha} (the LoRA scale rule, space/scale.py; files written
before it carry ``scaling``, a constant s), allocation {"lora": {site_key: rank}}, elements (one row per
chosen element with its kind, module and exact parameter count), versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from heterosearch.export.files import write_json
from heterosearch.export.schema import read_run_file
from heterosearch.space.allocation import Allocation, element_params
from heterosearch.space.scale import LoraScale, as_scale

FORMAT = "heterosearch.allocation"
FORMAT_VERSION = 1


def allocation_elements(allocation: Allocation, sites: Mapping[str, Any], scale: LoraScale | float) -> list[dict[str, Any]]:
    scale = as_scale(scale)
    rows = []
    for key, rank in sorted(allocation.lora.items(), key=lambda kv: (sites[kv[0]].layer, kv[0])):
        s = sites[key]
        rows.append(
            {
                "kind": "lora",
                "site": key,
                "module": s.name,
                "layer": s.layer,
                "role": s.role,
                "rank": rank,
                "alpha": scale.alpha_at(rank),
                "params": element_params("lora", {"site": key, "rank": rank}, sites),
            }
        )
    for kind, items in sorted(allocation.elements.items()):
        for e in items:
            rows.append({"kind": kind, **e, "params": element_params(kind, e, sites)})
    return rows


def write_allocation(path: Path, allocation: Allocation, sites: Mapping[str, Any], scale: LoraScale | float, **fields: Any) -> dict[str, Any]:
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **fields,
        "params": allocation.params(sites),
        "scale": as_scale(scale).to_dict(),
        "allocation": allocation.to_dict(),
        "elements": allocation_elements(allocation, sites, scale),
    }
    write_json(path, data)
    return data


def allocation_scale(data: Mapping[str, Any]) -> LoraScale:
    """The scale rule of a read ``allocation.json`` (``scale``, or the older constant ``scaling``)."""
    if "scale" in data:
        return LoraScale.from_dict(data["scale"])
    return as_scale(float(data.get("scaling", 2.0)))


def read_allocation(path: Path) -> tuple[Allocation, dict[str, Any]]:
    data = read_run_file(path, "allocation.json")  # format, format_version and every field: export/schema.py
    return Allocation.from_dict(data["allocation"]), data
