"""Adaptable linear sites of a transformer: the units a rank allocation is made over.

A *site* is one linear projection of one block (``L3.v`` = layer 3's value projection).
Sites are found by module-name rules rather than by model class, so any checkpoint that
follows a known family's naming (BERT-likes, DistilBERT, OPT, GPT-2, Llama-likes) works
without code changes; another family is one entry in ``FAMILIES``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from heterosearch.errors import UserError

ROLES: tuple[str, ...] = ("q", "k", "v", "qkv", "o", "ffn_gate", "ffn_in", "ffn_out")
"""Site roles in canonical order (``qkv`` = GPT-2's fused c_attn, ``ffn_gate`` = Llama gate_proj)."""

_ROLE_INDEX = {role: i for i, role in enumerate(ROLES)}


@dataclass(frozen=True, order=True)
class Site:
    """One adaptable linear module of one transformer block.

    Ordering is by ``(layer, ROLES.index(role))`` so sorted sites read q, k, v, o, ffn per layer;
    ``role_index`` is a derived field placed second only to make ``order=True`` do that.
    """

    layer: int
    role_index: int = field(init=False, repr=False)
    role: str
    name: str  # full dotted name as in model.named_modules()
    d_in: int
    d_out: int
    conv1d: bool = False  # GPT-2 Conv1D: weight is (d_in, d_out), not (d_out, d_in)

    def __post_init__(self) -> None:
        if self.role not in _ROLE_INDEX:
            raise ValueError(f"unknown site role {self.role!r} (known: {', '.join(ROLES)})")
        object.__setattr__(self, "role_index", _ROLE_INDEX[self.role])

    @property
    def key(self) -> str:
        """Readable id used in allocations, reports and exports, e.g. ``"L3.v"``."""
        return f"L{self.layer}.{self.role}"


def site_sort_key(site: Site) -> tuple[int, int]:
    """(layer, role position in ROLES): the canonical site order."""
    return (site.layer, _ROLE_INDEX[site.role])


@dataclass(frozen=True)
class Family:
    """Naming rule of one model family: a block prefix with the layer index, and suffix -> role."""

    name: str
    block: str  # regex for the block prefix; group 1 is the layer index
    roles: dict[str, str]  # dotted module-name suffix after the block -> role

    def patterns(self) -> list[tuple[re.Pattern[str], str]]:
        head = r"(?:^|\.)" + self.block + r"\."
        return [(re.compile(head + re.escape(suffix) + "$"), role) for suffix, role in self.roles.items()]


FAMILIES: tuple[Family, ...] = (
    Family(
        "bert",  # also RoBERTa, ELECTRA, MiniLM, ...
        r"layer\.(\d+)",
        {
            "attention.self.query": "q",
            "attention.self.key": "k",
            "attention.self.value": "v",
            "attention.output.dense": "o",
            "intermediate.dense": "ffn_in",
            "output.dense": "ffn_out",
        },
    ),
    Family(
        "distilbert",
        r"transformer\.layer\.(\d+)",
        {
            "attention.q_lin": "q",
            "attention.k_lin": "k",
            "attention.v_lin": "v",
            "attention.out_lin": "o",
            "ffn.lin1": "ffn_in",
            "ffn.lin2": "ffn_out",
        },
    ),
    Family(
        "opt",
        r"layers\.(\d+)",
        {
            "self_attn.q_proj": "q",
            "self_attn.k_proj": "k",
            "self_attn.v_proj": "v",
            "self_attn.out_proj": "o",
            "fc1": "ffn_in",
            "fc2": "ffn_out",
        },
    ),
    Family(
        "gpt2",
        r"h\.(\d+)",
        {"attn.c_attn": "qkv", "attn.c_proj": "o", "mlp.c_fc": "ffn_in", "mlp.c_proj": "ffn_out"},
    ),
    Family(
        "llama",  # also Mistral, Qwen2, ...
        r"layers\.(\d+)",
        {
            "self_attn.q_proj": "q",
            "self_attn.k_proj": "k",
            "self_attn.v_proj": "v",
            "self_attn.o_proj": "o",
            "mlp.gate_proj": "ffn_gate",
            "mlp.up_proj": "ffn_in",
            "mlp.down_proj": "ffn_out",
        },
    ),
)

_RULES: list[tuple[re.Pattern[str], str]] = [rule for fam in FAMILIES for rule in fam.patterns()]


def match_site_name(name: str) -> tuple[int, str] | None:
    """(layer, role) if a module name follows a known family's naming, else None (first rule wins)."""
    for pattern, role in _RULES:
        m = pattern.search(name)
        if m:
            return int(m.group(1)), role
    return None


def _linear_shape(module: Any) -> tuple[int, int, bool] | None:
    """(d_in, d_out, conv1d) for nn.Linear / GPT-2 Conv1D, None for anything else."""
    from torch import nn

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        Conv1D = ()  # type: ignore[assignment,misc]  # noqa: N806

    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, False
    if Conv1D and isinstance(module, Conv1D):
        d_in, d_out = module.weight.shape
        return int(d_in), int(d_out), True
    return None


def discover_sites(model: Any) -> list[Site]:
    """All adaptable linear sites of ``model`` in canonical order.

    Raises UserError (one line, listing what was seen) when the naming is unknown, and
    ValueError when two modules claim the same (layer, role), e.g. an encoder-decoder model.
    """
    sites: list[Site] = []
    linear_names: list[str] = []
    seen: dict[tuple[int, str], str] = {}
    for name, module in model.named_modules():
        shape = _linear_shape(module)
        if shape is None:
            continue
        linear_names.append(name)
        hit = match_site_name(name)
        if hit is None:
            continue
        layer, role = hit
        if (layer, role) in seen:
            raise ValueError(
                f"site L{layer}.{role} matched twice: {seen[(layer, role)]!r} and {name!r}; "
                "heterosearch supports one stack of transformer blocks"
            )
        seen[(layer, role)] = name
        d_in, d_out, conv1d = shape
        sites.append(Site(layer, role, name, d_in, d_out, conv1d))
    if not sites:
        cls = type(model).__name__
        examples = f" (e.g. {', '.join(linear_names[:3])})" if linear_names else ""
        raise UserError(
            f"no adaptable sites found in {cls}: saw {len(linear_names)} linear modules{examples}; "
            "heterosearch knows BERT/RoBERTa, DistilBERT, OPT, GPT-2 and Llama-style naming"
        )
    return sorted(sites, key=site_sort_key)


def num_layers(sites: Iterable[Site]) -> int:
    """Number of transformer blocks covered (layers are indexed from 0)."""
    return max((s.layer for s in sites), default=-1) + 1


def sites_by_key(sites: Sequence[Site]) -> dict[str, Site]:
    """``{"L3.v": Site, ...}`` in canonical order, for look-ups by allocation key."""
    return {s.key: s for s in sorted(sites, key=site_sort_key)}
