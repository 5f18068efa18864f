"""Mixed allocations (LoRA + shortcut + bank + MoS on one model): init, counting, save/load."""

from __future__ import annotations

import pytest
import torch

from heterosearch.adapters import apply_allocation, count_adapter_params
from heterosearch.export import write_allocation
from heterosearch.export.loader import save_adapters
from heterosearch.models import discover_sites, sites_by_key
from heterosearch.space.allocation import Allocation
from tests.tiny_models import tiny_batch, tiny_model

MIXED = {
    "lora": {"L0.q": 2, "L2.ffn_in": 3, "L3.o": 1},
    "bank": [{"role": "v", "layers": [0, 1, 2], "rank": 4, "variant": "tl6"},
             {"role": "ffn_out", "layers": [2, 3], "rank": 2, "variant": "share_a"}],
    "mos": [{"role": "k", "r_e": 2, "shards": 2, "r_p": 1, "ranks": {"0": 2, "1": 3, "2": 2, "3": 2}}],
    "shortcut": [{"layer": 1, "ctype": "residual_1", "rank": 2}, {"layer": 2, "ctype": "shortcut_ffn", "rank": 4},
                 {"layer": 3, "ctype": "shortcut_sa", "rank": 1}, {"layer": 0, "ctype": "residual_2", "rank": 2}],
}


def _inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "labels"}


@pytest.mark.parametrize("family", ["bert", "opt"])
def test_mixed_allocation_init_equals_base_and_counts_match(family: str) -> None:
    model = tiny_model(family, num_layers=4)
    sites = discover_sites(model)
    batch = tiny_batch()
    with torch.no_grad():
        base = model(**_inputs(batch)).logits
    alloc = Allocation.from_dict(MIXED)
    apply_allocation(model, sites, alloc, 2.0, seed=0)
    with torch.no_grad():
        adapted = model(**_inputs(batch)).logits
    assert torch.allclose(adapted, base, atol=1e-6)
    expected = alloc.params(sites_by_key(sites))
    trainable_adapters = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and ".hs_" in "." + n)
    assert count_adapter_params(model) == expected == trainable_adapters
    assert set(alloc.kinds()) == {"lora", "bank", "mos", "shortcut"}


def test_mixed_allocation_trains_and_reloads_to_identical_logits(tmp_path) -> None:
    import heterosearch

    model = tiny_model("bert", num_layers=4)
    sites = discover_sites(model)
    batch = tiny_batch()
    alloc = Allocation.from_dict(MIXED)
    apply_allocation(model, sites, alloc, 2.0, seed=0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    write_allocation(tmp_path / "allocation.json", alloc, sites_by_key(sites), 2.0)
    save_adapters(model, tmp_path)
    # A different init seed: every trained tensor and every MoS index must come from the file.
    fresh = heterosearch.load_adapters(tiny_model("bert", num_layers=4), tmp_path, seed=123).eval()
    with torch.no_grad():
        before = model(**_inputs(batch)).logits
        after = fresh(**_inputs(batch)).logits
        untrained = tiny_model("bert", num_layers=4)(**_inputs(batch)).logits
    assert torch.equal(before, after)
    assert not torch.allclose(before, untrained, atol=1e-4)  # training did change the model


@pytest.mark.parametrize("family", ["bert", "opt"])
@pytest.mark.parametrize("with_shortcuts", [False, True])
def test_merging_a_mixed_allocation_gives_a_plain_model_with_the_same_logits(family: str, with_shortcuts: bool) -> None:
    """LoRA (one on a bank-wrapped layer's neighbour), banks and MoS fold into the weights (issue: merge)."""
    from heterosearch.adapters.merge import merge_and_unload, remaining_shortcuts

    mixed = {k: v for k, v in MIXED.items() if with_shortcuts or k != "shortcut"}
    mixed = {**mixed, "lora": {**MIXED["lora"], "L1.v": 2}}  # L1.v is also in the tl6 bank: LoRA wraps the bank
    model = tiny_model(family, num_layers=4)
    apply_allocation(model, discover_sites(model), Allocation.from_dict(mixed), 2.0, seed=0)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    model.eval()
    batch = tiny_batch()
    with torch.no_grad():
        before = model(**_inputs(batch)).logits
        merge_and_unload(model)
        after = model(**_inputs(batch)).logits
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    if with_shortcuts:
        assert remaining_shortcuts(model) > 0
    else:
        assert set(model.state_dict()) == set(tiny_model(family, num_layers=4).state_dict())
