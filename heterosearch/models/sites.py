"""Adaptable linear sites of a transformer: the units a rank allocation is made over.

A *site* is one linear projection of one block (``L3.v`` = layer 3's value projection).
Sites are found by module-name rules rather than by model class, so any checkpoint that
follows a known family's naming (BERT-likes, DeBERTa-v2/v3, DistilBERT, OPT, GPT-2,
GPT-NeoX, Falcon, Llama-likes, Phi-3) works without code changes; another family is one
entry in ``FAMILIES``. A search space may instead name the sites itself (``roles:``, a
regex per role, matched against the module's name *within its block*: ``discover_sites``).

Fused projections stay one site with a fused role: ``qkv`` (GPT-2 c_attn, Phi-3 qkv_proj,
GPT-NeoX/Falcon query_key_value; weight (d_q + d_k + d_v) x d) and ``ffn_gate_up`` (Phi-3
gate_up_proj; weight 2 d_ff x d). One LoRA pair on the fused weight is what PEFT does with
the same module name, and its count r (d_in + d_out) is exact for that shape. A space that
asks for q, k or v gets the fused site instead (``models/roles.py``).

Encoder-decoder models (BART, T5) are refused: their two block stacks would claim the same
(layer, role) twice, and the rank allocation is made over one stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from heterosearch.errors import UserError

ROLES: tuple[str, ...] = ("q", "k", "v", "qkv", "o", "ffn_gate", "ffn_in", "ffn_out", "ffn_gate_up")
"""Site roles in canonical order (``qkv`` = fused q, k, v as GPT-2's c_attn, ``ffn_gate`` = Llama
gate_proj, ``ffn_gate_up`` = fused gate and up as Phi-3's gate_up_proj). ``ffn_gate_up`` came
last, after ``ffn_out``, so every earlier role kept its position (and every earlier model its
site order, hence its search parameter order)."""

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
        "deberta-v2",  # DeBERTa-v2 and -v3: BERT's block layout, own q/k/v names
        r"layer\.(\d+)",
        {
            "attention.self.query_proj": "q",
            "attention.self.key_proj": "k",
            "attention.self.value_proj": "v",
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
    Family(
        "phi3",  # fused: qkv_proj (d_q + 2 d_kv) x d, gate_up_proj 2 d_ff x d
        r"layers\.(\d+)",
        {
            "self_attn.qkv_proj": "qkv",
            "self_attn.o_proj": "o",
            "mlp.gate_up_proj": "ffn_gate_up",
            "mlp.down_proj": "ffn_out",
        },
    ),
    Family(
        "gpt-neox",  # also Pythia; fused query_key_value 3d x d
        r"layers\.(\d+)",
        {
            "attention.query_key_value": "qkv",
            "attention.dense": "o",
            "mlp.dense_h_to_4h": "ffn_in",
            "mlp.dense_4h_to_h": "ffn_out",
        },
    ),
    Family(
        "falcon",  # fused query_key_value (d + 2 d_kv) x d
        r"h\.(\d+)",
        {
            "self_attention.query_key_value": "qkv",
            "self_attention.dense": "o",
            "mlp.dense_h_to_4h": "ffn_in",
            "mlp.dense_4h_to_h": "ffn_out",
        },
    ),
)

KNOWN_FAMILIES = "BERT/RoBERTa, DistilBERT, OPT, GPT-2 and Llama-style naming (also DeBERTa-v2/v3, GPT-NeoX, Falcon, Phi-3)"

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


# A module inside a block stack: "<stack>.<layer index>.<name within the block>"; the first
# numbered component is the block index (deberta.encoder.layer.3.attention.self.query_proj).
_IN_BLOCK = re.compile(r"^(?:(.*?)\.)?(\d+)\.(.+)$")


def compile_role_patterns(patterns: Mapping[str, str], where: str = "search space roles") -> dict[str, re.Pattern[str]]:
    """role -> compiled regex; a bad role or regex is a one-line UserError."""
    out = {}
    for role, pattern in patterns.items():
        if role not in _ROLE_INDEX:
            raise UserError(f"{where}: unknown role {role!r} (known: {', '.join(ROLES)})")
        if not isinstance(pattern, str) or not pattern:
            raise UserError(f"{where}.{role}: expected a non-empty regular expression, got {pattern!r}")
        try:
            out[role] = re.compile(pattern)
        except re.error as exc:
            raise UserError(f"{where}.{role}: bad regular expression {pattern!r}: {exc}") from None
    return out


def _match_patterns(name: str, patterns: Mapping[str, re.Pattern[str]], where: str) -> tuple[int, str] | None:
    """(layer, role) if ``name`` is inside a numbered block and one role's regex searches its inner name."""
    m = _IN_BLOCK.match(name)
    if m is None:
        return None
    inner = m.group(3)
    roles = [role for role, rx in patterns.items() if rx.search(inner)]
    if len(roles) > 1:
        raise UserError(f"{where}: module {name!r} matches the patterns of roles {' and '.join(roles)}; "
                        "anchor them (e.g. '^self_attn\\.q_proj$') so each module has one role")
    return (int(m.group(2)), roles[0]) if roles else None


def _refuse_encoder_decoder(model: Any) -> None:
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        kind = getattr(config, "model_type", "") or type(model).__name__
        raise UserError(
            f"{type(model).__name__} is an encoder-decoder model ({kind}): heterosearch allocates ranks over one "
            "stack of transformer blocks; use an encoder-only (BERT/DeBERTa-like) or decoder-only model"
        )


def discover_sites(model: Any, patterns: Mapping[str, str] | None = None,
                   where: str = "search space roles") -> list[Site]:
    """All adaptable linear sites of ``model`` in canonical order.

    ``patterns`` (a space's ``roles:``): role -> regex, searched (``re.search``) in each
    Linear's name *within its block*, the part after the first numbered component
    (``attention.self.query`` of ``bert.encoder.layer.3.attention.self.query``); anchor a
    pattern with ^ and $ to match it whole. Given, it alone decides the sites (the built-in
    table is not used). Every pattern must match at least one Linear; a module matched by two
    roles, or two modules claiming one (layer, role), is a UserError. Without ``patterns``, an
    unknown naming is a UserError listing what was seen. Encoder-decoder models are refused.
    """
    _refuse_encoder_decoder(model)
    compiled = compile_role_patterns(patterns, where) if patterns else None
    sites: list[Site] = []
    linear_names: list[str] = []
    seen: dict[tuple[int, str], str] = {}
    for name, module in model.named_modules():
        shape = _linear_shape(module)
        if shape is None:
            continue
        linear_names.append(name)
        hit = _match_patterns(name, compiled, where) if compiled else match_site_name(name)
        if hit is None:
            continue
        layer, role = hit
        if (layer, role) in seen:
            raise UserError(
                f"site L{layer}.{role} matched twice: {seen[(layer, role)]!r} and {name!r}; "
                "heterosearch supports one stack of transformer blocks"
                + (f" (narrow the pattern {where}.{role})" if compiled else "")
            )
        seen[(layer, role)] = name
        d_in, d_out, conv1d = shape
        sites.append(Site(layer, role, name, d_in, d_out, conv1d))
    if compiled:
        _check_every_pattern_matched(compiled, sites, linear_names, where)
    if not sites:
        cls = type(model).__name__
        examples = f" (e.g. {', '.join(linear_names[:3])})" if linear_names else ""
        raise UserError(
            f"no adaptable sites found in {cls}: saw {len(linear_names)} linear modules{examples}; "
            f"heterosearch knows {KNOWN_FAMILIES}; name other modules with a search space's roles: mapping"
        )
    return sorted(sites, key=site_sort_key)


def _check_every_pattern_matched(compiled: Mapping[str, re.Pattern[str]], sites: Sequence[Site],
                                 linear_names: Sequence[str], where: str) -> None:
    found = {s.role for s in sites}
    for role, rx in compiled.items():
        if role not in found:
            inner = list(dict.fromkeys(m.group(3) for n in linear_names if (m := _IN_BLOCK.match(n))))
            seen = f"names within a block: {', '.join(inner[:8])}" if inner else "no Linear inside a numbered block"
            raise UserError(f"{where}.{role}: pattern {rx.pattern!r} matches no linear module of the model ({seen})")


def num_layers(sites: Iterable[Site]) -> int:
    """Number of transformer blocks covered (layers are indexed from 0)."""
    return max((s.layer for s in sites), default=-1) + 1


def sites_by_key(sites: Sequence[Site]) -> dict[str, Site]:
    """``{"L3.v": Site, ...}`` in canonical order, for look-ups by allocation key."""
    return {s.key: s for s in sorted(sites, key=site_sort_key)}
