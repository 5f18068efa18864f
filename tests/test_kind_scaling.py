"""The first-step rule of every adapter kind: after one Adam step, a kind's term at a member site
has the size of rank-matched per-site LoRA's under the run's scale rule (README "Scale and init
of each kind"), and the adapted model equals the base model before that step.

Why one Adam step: at init B = 0, so only B moves (dL/dA = s B^T G = 0) and Adam moves each of
its entries by about lr whatever its gradient's size; a shared B (bank, MoS pool), whose
gradient is summed over member layers, therefore takes a step of LoRA's size, and the term's
change s * dB A x differs from LoRA's only through s and the sign pattern. A kind that ignored
the rule (s = 2 at every rank, as before) fails here by the factor 2 / s(r).

Tiny random BERT (tests/conftest.py): 2 layers, hidden 32, FFN 64.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from heterosearch.adapters import apply_allocation
from heterosearch.models import discover_sites
from heterosearch.space.allocation import Allocation
from heterosearch.space.scale import LoraScale
from tests.tiny_models import tiny_batch

pytestmark = pytest.mark.usefixtures("one_thread_module")

RSLORA = LoraScale("rslora", 2.0 * 2.0**0.5)  # the recipe's rule (recipe.py)
LR = 1e-3
# Measured ratios on the tiny model sit in 0.8-1.2 (signs of a summed gradient differ from a
# single layer's); the old fixed s = 2 gives 2 / s(8) = 2.8 at rank 8.
LOW, HIGH = 0.6, 1.5


def _rms(t: torch.Tensor, mask: torch.Tensor) -> float:
    """RMS over non-padded tokens of the per-token norm of t (..., d)."""
    norms = t.reshape(-1, t.shape[-1]).norm(dim=-1)[mask.reshape(-1).bool()]
    return float(norms.pow(2).mean().sqrt())


def _deltas(model: Any, batch: dict[str, torch.Tensor]) -> list[float]:
    """||term|| of every adapter term (wrapper ``delta`` or shortcut term) on ``batch``."""
    out: list[float] = []
    handles = []
    mask = batch["attention_mask"]
    for module in model.modules():
        if hasattr(module, "base_layer") and callable(getattr(module, "delta", None)):
            handles.append(module.register_forward_hook(lambda m, a, o: out.append(_rms(m.delta(a[0]), mask))))
        elif type(module).__name__ == "ShortcutTerm":
            handles.append(module.register_forward_hook(lambda m, a, o: out.append(_rms(o, mask))))
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for h in handles:
            h.remove()
    return out


def first_step(base: Any, alloc: Allocation, scale: Any, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean ||delta y|| of the allocation's terms after one AdamW step; checks adapted == base at init."""
    model = copy.deepcopy(base)
    sites = discover_sites(model)
    apply_allocation(model, sites, alloc, scale, seed=0, train_head=False)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batches[1]).logits, base(**batches[1]).logits), "adapted != base at init"
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    model(**batches[0]).loss.backward()
    opt.step()
    deltas = _deltas(model, batches[1])
    assert deltas and all(d > 0 for d in deltas)
    return sum(deltas) / len(deltas)


def _lora(role: str, rank: int, layers: tuple[int, ...] = (0, 1)) -> Allocation:
    return Allocation(lora={f"L{i}.{role}": rank for i in layers})


def _bank(role: str, variant: str, rank: int) -> Allocation:
    return Allocation(elements={"bank": [{"role": role, "layers": [0, 1], "rank": rank, "variant": variant}]})


def _mos(role: str, r_e: int, rank: int) -> Allocation:
    return Allocation(elements={"mos": [{"role": role, "r_e": r_e, "shards": 2, "r_p": 1,
                                         "ranks": {"0": rank, "1": rank}}]})


def _shortcut(layer: int, ctype: str, rank: int) -> Allocation:
    return Allocation(elements={"shortcut": [{"layer": layer, "ctype": ctype, "rank": rank}]})


# (case, the kind's allocation, rank-matched LoRA on sites with the same input and shape)
CASES = [
    ("bank share_ab v r8", _bank("v", "share_ab", 8), _lora("v", 8)),
    ("bank share_a ffn_in r8", _bank("ffn_in", "share_a", 8), _lora("ffn_in", 8)),
    ("bank share_b ffn_out r8", _bank("ffn_out", "share_b", 8), _lora("ffn_out", 8)),
    ("bank tl5 q r8", _bank("q", "tl5", 8), _lora("q", 8)),
    ("bank tl6 ffn_in r16", _bank("ffn_in", "tl6", 16), _lora("ffn_in", 16)),
    ("mos v re8 r8", _mos("v", 8, 8), _lora("v", 8)),
    ("mos ffn_in re4 r4", _mos("ffn_in", 4, 4), _lora("ffn_in", 4)),
]
# Shortcuts have no site of the same shape, input and output gradient to compare with inside the
# model (on the tiny random model a shortcut reading x_l steps 1.3-2x LoRA on q, which reads x_l
# too, because its residual-stream gradient is more coherent; on all-MiniLM-L6-v2 1.0-1.2x,
# benchmarks/kind_scaling.py). Their rule is checked exactly instead: a term is rank-r LoRA on a
# zero d x d map (test_shortcut_term_is_lora_on_a_zero_map).


@pytest.fixture(scope="module")
def setup() -> tuple[Any, list[dict[str, torch.Tensor]]]:
    from tests.tiny_models import tiny_model

    return tiny_model("bert", seed=0).eval(), [tiny_batch(n=16, seed=i) for i in range(2)]


@pytest.mark.parametrize("name,element,matched", CASES, ids=[c[0] for c in CASES])
def test_first_step_matches_rank_matched_lora(setup, name, element, matched):
    base, batches = setup
    ratio = first_step(base, element, RSLORA, batches) / first_step(base, matched, RSLORA, batches)
    assert LOW < ratio < HIGH, f"{name}: first-step ||delta y|| is {ratio:.2f}x rank-matched LoRA's"


def test_without_the_rule_the_step_is_too_large(setup):
    """The check can fail: s = 2 at every rank (the kinds before the rule) is 2 / s(8) = 2.8x too large."""
    base, batches = setup
    old = first_step(base, _bank("v", "share_ab", 8), LoraScale("ratio", 2.0), batches)  # s = 2 at every rank
    ratio = old / first_step(base, _lora("v", 8), RSLORA, batches)
    assert ratio > HIGH


@pytest.mark.parametrize("rank", [1, 4, 16])
def test_shortcut_term_is_lora_on_a_zero_map(rank):
    """Same init draws, same input, same loss: a shortcut term and per-site LoRA on a zero d x d
    Linear take the same first Adam step, at the rule's s(r)."""
    from heterosearch.adapters.lora.layer import LoraLinear
    from heterosearch.adapters.shortcut.layer import ShortcutTerm

    d = 32
    g = torch.Generator().manual_seed(1)
    x, target = torch.randn(3, 7, d, generator=g), torch.randn(3, 7, d, generator=g)
    zero = torch.nn.Linear(d, d, bias=False)
    torch.nn.init.zeros_(zero.weight)
    zero.weight.requires_grad_(False)
    term = ShortcutTerm(d, rank, RSLORA.at(rank), zero.weight, torch.Generator().manual_seed(0))
    lora = LoraLinear(zero, d, d, rank, RSLORA.at(rank), torch.Generator().manual_seed(0))
    outs = []
    for module in (term, lora):
        params = [p for p in module.parameters() if p.requires_grad]
        assert len(params) == 2 and not module(x).any()  # zero at init
        opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
        ((module(x) - target) ** 2).mean().backward()
        opt.step()
        outs.append(module(x).detach())
    assert outs[0].abs().max() > 0
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("rule", [RSLORA, LoraScale("standard", 16.0), LoraScale("ratio", 2.0)], ids=str)
def test_every_kind_uses_the_rule_at_its_own_rank(tiny_bert, rule):
    """s of every term = the run's rule at that term's rank (bank rank, MoS site rank, shortcut rank)."""
    model = tiny_bert()
    sites = discover_sites(model)
    alloc = Allocation(
        lora={"L0.k": 2},
        elements={"bank": _bank("v", "share_ab", 8).elements["bank"], "mos": _mos("q", 4, 4).elements["mos"],
                  "shortcut": [{"layer": 1, "ctype": "residual_2", "rank": 16}]},
    )
    apply_allocation(model, sites, alloc, rule, seed=0)
    kinds = {"LoraLinear", "BankLinear", "MosLinear", "ShortcutTerm"}
    seen = {type(m).__name__: (m.rank, m.scaling) for m in model.modules() if type(m).__name__ in kinds}
    assert set(seen) == kinds
    for kind, (rank, scaling) in seen.items():
        assert scaling == pytest.approx(rule.at(rank)), kind
