"""Where the shortcut terms attach in each model family's transformer block.

Per block, three points are needed (module names relative to the block):

- ``h_source``: a module whose first input is h_l, the residual stream entering the
  feed-forward block (captured with a forward pre-hook);
- ``attn_add`` / ``ffn_add``: the tensor where a term joins the attention / feed-forward
  residual. ``mode="input"`` (post-LN families): the first input of the LayerNorm that closes
  the sub-block, i.e. the residual sum ``branch + residual`` (BERT's
  ``LayerNorm(dropout(dense(h)) + input_tensor)``), so the existing LayerNorm normalises the
  term and no extra LayerNorm is needed (HeteroLoRA's code adds one). ``mode="output"``
  (pre-LN families): the output of the sub-block's last projection, which the block adds to
  the residual stream unchanged (OPT and GPT-2 apply their residual dropout to it in training).

x_l, the layer input, is captured with a pre-hook on the block itself. The block prefix is
derived from each layer's ``o`` site name, so ``models/`` needs no shortcut-specific rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.errors import UserError
from heterosearch.models.sites import Site


@dataclass(frozen=True)
class BlockPlan:
    """The attachment points of one family, relative to the block prefix."""

    family: str
    o_suffix: str  # the 'o' site relative to the block: identifies the family
    h_source: str  # first input is h_l (FFN block input, residual stream)
    attn_add: str
    ffn_add: str
    mode: str  # "input": add to the module's first input; "output": add to its output


PLANS: tuple[BlockPlan, ...] = (
    # BERT-likes (RoBERTa, ELECTRA, MiniLM): post-LN; h_l = attention output after its LayerNorm.
    BlockPlan(
        "bert", "attention.output.dense", "intermediate", "attention.output.LayerNorm", "output.LayerNorm", "input"
    ),
    BlockPlan("distilbert", "attention.out_lin", "ffn", "sa_layer_norm", "output_layer_norm", "input"),
    # Pre-LN decoders: h = x + attn(LN(x)); out = h + mlp(LN(h)).
    BlockPlan("opt", "self_attn.out_proj", "final_layer_norm", "self_attn.out_proj", "fc2", "output"),
    BlockPlan("gpt2", "attn.c_proj", "ln_2", "attn.c_proj", "mlp.c_proj", "output"),
    BlockPlan("llama", "self_attn.o_proj", "post_attention_layernorm", "self_attn.o_proj", "mlp.down_proj", "output"),
)


def find_blocks(model: Any, sites: Sequence[Site]) -> tuple[BlockPlan, list[str]]:
    """The family plan and the block prefix of every layer (index = layer), checked against ``model``."""
    o_sites = sorted((s for s in sites if s.role == "o"), key=lambda s: s.layer)
    if not o_sites:
        raise UserError("shortcuts need the attention output projection of every layer ('o' sites); none found")
    plan = next((p for p in PLANS if o_sites[0].name.endswith("." + p.o_suffix)), None)
    if plan is None:
        raise UserError(
            f"shortcuts do not know the block layout of {o_sites[0].name!r} "
            f"(known families: {', '.join(p.family for p in PLANS)})"
        )
    if plan.family == "opt" and not getattr(getattr(model, "config", None), "do_layer_norm_before", True):
        raise UserError("shortcuts support pre-LN OPT only (do_layer_norm_before=True; OPT-350m is post-LN)")
    layers = [s.layer for s in o_sites]
    if layers != list(range(len(layers))):
        raise UserError(f"shortcuts need an 'o' site in every layer 0..{max(layers)}; found layers {layers}")
    blocks = [s.name[: -len(plan.o_suffix) - 1] for s in o_sites]
    for prefix in blocks:
        for rel in (plan.h_source, plan.attn_add, plan.ffn_add):
            try:
                model.get_submodule(f"{prefix}.{rel}")
            except AttributeError:
                raise UserError(f"{plan.family} block {prefix!r} has no module {rel!r} for shortcuts") from None
    return plan, blocks
