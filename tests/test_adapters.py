"""LoRA injection on every family: exact at init, exact counts, only adapters train, PEFT-equivalent."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from heterosearch.adapters import (
    adapter_parameters,
    adapter_state_dict,
    apply_allocation,
    count_adapter_params,
    head_parameters,
)
from heterosearch.adapters.lora import PREFIX, LoraLinear
from heterosearch.models import discover_sites, sites_by_key
from heterosearch.space.allocation import Allocation
from tests.tiny_models import FAMILIES, tiny_batch, tiny_model

SCALING = 2.0
# Cycled over the sites of a model: some sites off, several different ranks.
MIXED = (3, 0, 1, 4, 0, 2, 5)

HEADS = {
    "bert": {"classifier.weight", "classifier.bias"},
    "roberta": {
        "classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias",
    },
    "distilbert": {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"},
    "opt": {"score.weight"},
    "gpt2": {"score.weight"},
    "llama": {"score.weight"},
}


# One torch thread for the whole module (tests/conftest.py): tiny matmuls run faster on one thread
# than on two on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread_module")


def mixed_allocation(sites: list[Any]) -> Allocation:
    return Allocation(lora={s.key: MIXED[i % len(MIXED)] for i, s in enumerate(sites)})


def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def adapted(family: str, seed: int = 0) -> tuple[nn.Module, list[Any], Allocation, torch.Tensor]:
    """(adapted model, sites, allocation, the base model's logits on tiny_batch())."""
    model = tiny_model(family)
    sites = discover_sites(model)
    base_logits = logits(model, tiny_batch())
    alloc = mixed_allocation(sites)
    apply_allocation(model, sites, alloc, scaling=SCALING, seed=seed)
    return model, sites, alloc, base_logits


@pytest.mark.parametrize("family", FAMILIES)
def test_mixed_allocation_is_exact_at_init(family: str) -> None:
    model, sites, alloc, base_logits = adapted(family)
    ranks = set(alloc.lora.values())
    assert len(ranks) >= 3 and len(alloc.lora) < len(sites)  # mixed ranks, some sites off
    for site in sites:
        module = model.get_submodule(site.name)
        rank = alloc.lora.get(site.key, 0)
        if rank:
            assert isinstance(module, LoraLinear) and module.rank == rank and module.scaling == SCALING
            assert module.hs_lora_A.shape == (rank, site.d_in)
            assert module.hs_lora_B.shape == (site.d_out, rank)
            assert torch.count_nonzero(module.hs_lora_B) == 0
            assert torch.count_nonzero(module.hs_lora_A) == module.hs_lora_A.numel()
            assert module.hs_lora_A.abs().max() <= 1 / math.sqrt(site.d_in)  # PEFT's Kaiming bound
        else:
            assert not isinstance(module, LoraLinear)
    after = logits(model, tiny_batch())
    assert after.shape == (4, 2)
    assert torch.equal(after, base_logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_counts_agree(family: str) -> None:
    model, sites, alloc, _ = adapted(family)
    by_key = sites_by_key(sites)
    expected = sum(r * (by_key[k].d_in + by_key[k].d_out) for k, r in alloc.lora.items())
    trainable_lora = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and PREFIX in n)
    assert count_adapter_params(model) == alloc.params(by_key) == trainable_lora == expected > 0
    assert set(adapter_parameters(model)) == {n for n, _ in model.named_parameters() if PREFIX in n}
    assert len(adapter_parameters(model)) == 2 * len(alloc.lora)


@pytest.mark.parametrize("family", FAMILIES)
def test_only_adapters_and_head_train(family: str) -> None:
    model, _, _, _ = adapted(family)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(head_parameters(model)) == HEADS[family]
    assert trainable == set(adapter_parameters(model)) | HEADS[family]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.endswith("base_layer.weight") for n in frozen)
    assert all(PREFIX not in n for n in frozen)

    no_head = tiny_model(family)
    no_head_sites = discover_sites(no_head)
    apply_allocation(no_head, no_head_sites, mixed_allocation(no_head_sites), SCALING, train_head=False)
    assert {n for n, p in no_head.named_parameters() if p.requires_grad} == set(adapter_parameters(no_head))


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_moves_the_logits(family: str) -> None:
    model, _, _, base_logits = adapted(family)
    adapters = adapter_parameters(model)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    a_before = {n: p.detach().clone() for n, p in adapters.items() if n.endswith("hs_lora_A")}
    # Only adapter parameters in the optimiser: any change of the logits comes from the adapters.
    opt = torch.optim.Adam(adapters.values(), lr=1e-2)
    batch = tiny_batch()
    loss_before = model(**batch).loss
    loss_before.backward()
    for n, p in adapters.items():
        assert p.grad is not None
        if n.endswith("hs_lora_A"):
            assert torch.count_nonzero(p.grad) == 0  # B = 0 => dL/dA = s B^T G = 0
    assert any(torch.count_nonzero(p.grad) > 0 for n, p in adapters.items() if n.endswith("hs_lora_B"))
    opt.step()
    after = logits(model, batch)
    assert (after - base_logits).abs().max() > 1e-5
    with torch.no_grad():
        assert model(**batch).loss < loss_before  # a descent step on the adapters alone
    for n, p in model.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n
        if n in a_before:
            assert torch.equal(p, a_before[n]), n


def test_adapters_are_seeded_in_site_order() -> None:
    m0, sites, alloc, _ = adapted("bert", seed=7)
    m1, _, _, _ = adapted("bert", seed=7)
    m2, _, _, _ = adapted("bert", seed=8)
    a0 = adapter_parameters(m0)
    a1 = adapter_parameters(m1)
    a2 = adapter_parameters(m2)
    assert all(torch.equal(a0[n], a1[n]) for n in a0)
    assert not any(torch.equal(a0[n], a2[n]) for n in a0 if n.endswith("hs_lora_A"))
    # One generator, site by site in site order (documented in apply_allocation).
    g = torch.Generator().manual_seed(7)
    for site in sites:
        rank = alloc.lora.get(site.key, 0)
        if rank:
            expected = torch.empty(rank, site.d_in)
            nn.init.kaiming_uniform_(expected, a=math.sqrt(5), generator=g)
            assert torch.equal(m0.get_submodule(site.name).hs_lora_A, expected), site.key


def test_apply_allocation_errors_and_state_dict() -> None:
    model = tiny_model("bert")
    sites = discover_sites(model)
    with pytest.raises(ValueError, match=r"sites the model does not have: \['L9.q'\]"):
        apply_allocation(model, sites, Allocation(lora={"L9.q": 2}), SCALING)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        LoraLinear(nn.Linear(4, 4), 4, 4, 0, SCALING)
    apply_allocation(model, sites, Allocation(lora={"L0.q": 2, "L1.ffn_out": 1}), SCALING)
    state = adapter_state_dict(model)
    assert set(state) == {
        "bert.encoder.layer.0.attention.self.query.hs_lora_A",
        "bert.encoder.layer.0.attention.self.query.hs_lora_B",
        "bert.encoder.layer.1.output.dense.hs_lora_A",
        "bert.encoder.layer.1.output.dense.hs_lora_B",
        "classifier.weight",
        "classifier.bias",
    }
    a = model.get_submodule("bert.encoder.layer.0.attention.self.query").hs_lora_A
    assert torch.equal(state["bert.encoder.layer.0.attention.self.query.hs_lora_A"], a)
    assert state["bert.encoder.layer.0.attention.self.query.hs_lora_A"].data_ptr() != a.data_ptr()  # a copy


def test_lora_linear_forward_formula() -> None:
    base = nn.Linear(6, 5)
    layer = LoraLinear(base, 6, 5, 3, scaling=1.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.hs_lora_B.copy_(torch.randn(5, 3, generator=torch.Generator().manual_seed(1)))
    x = torch.randn(2, 4, 6)
    expected = base(x) + 1.5 * x @ (layer.hs_lora_B @ layer.hs_lora_A).t()
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-6)
    assert "rank=3, scaling=1.5" in repr(layer)


# ---------------------------------------------------------------- reference: PEFT's LoRA


@pytest.mark.parametrize(
    ("family", "key", "rank"),
    [("bert", "L1.v", 4), ("bert", "L0.ffn_out", 3), ("gpt2", "L0.qkv", 4), ("gpt2", "L1.ffn_in", 2)],
)
def test_lora_linear_equals_peft(family: str, key: str, rank: int) -> None:
    from peft import LoraConfig, get_peft_model

    alpha = SCALING * rank
    ours = tiny_model(family)
    theirs = tiny_model(family)
    site = sites_by_key(discover_sites(ours))[key]
    assert site.conv1d == (family == "gpt2")
    batch = tiny_batch()
    base_logits = logits(ours, batch)

    apply_allocation(ours, discover_sites(ours), Allocation(lora={key: rank}), scaling=SCALING, seed=3)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=[site.name], lora_dropout=0.0, bias="none",
                        fan_in_fan_out=site.conv1d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PEFT chatter about base_model_name_or_path etc.
        warnings.simplefilter("ignore", FutureWarning)  # transformers: is_gradient_checkpointing deprecation
        peft_model = get_peft_model(theirs, config)
    peft_layer = peft_model.base_model.model.get_submodule(site.name)
    our_layer = ours.get_submodule(site.name)
    assert peft_layer.scaling["default"] == our_layer.scaling == SCALING
    assert peft_layer.lora_A["default"].weight.shape == our_layer.hs_lora_A.shape == (rank, site.d_in)
    assert peft_layer.lora_B["default"].weight.shape == our_layer.hs_lora_B.shape == (site.d_out, rank)

    B = torch.randn(site.d_out, rank, generator=torch.Generator().manual_seed(11)) * 0.5
    with torch.no_grad():
        our_layer.hs_lora_B.copy_(B)
        peft_layer.lora_A["default"].weight.copy_(our_layer.hs_lora_A)
        peft_layer.lora_B["default"].weight.copy_(B)

    x = torch.randn(3, 7, site.d_in, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(our_layer(x), peft_layer(x), atol=1e-6, rtol=1e-5)
    ours_logits = logits(ours, batch)
    peft_logits = logits(peft_model, batch)
    torch.testing.assert_close(ours_logits, peft_logits, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(ours_logits, base_logits, atol=1e-4)  # B != 0 really changes the output
