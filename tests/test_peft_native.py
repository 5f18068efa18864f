"""A LoRA-only winner as a real PEFT adapter folder: plain PEFT loads it and computes our logits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from heterosearch.adapters import apply_allocation
from heterosearch.export.peft_native import PACKAGED_PUBLIC_ID, public_model_id, relative_name, save_peft_adapter
from heterosearch.models import discover_sites, sites_by_key
from heterosearch.space.allocation import Allocation
from heterosearch.space.scale import LoraScale
from tests.tiny_models import tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread_module")

ALLOCATIONS = {
    "bert": {"L0.q": 2, "L0.v": 3, "L1.ffn_in": 1, "L1.ffn_out": 4, "L1.o": 2},
    "gpt2": {"L0.qkv": 2, "L1.ffn_in": 3, "L1.o": 1},
    "distilbert": {"L0.q": 2, "L1.ffn_out": 3},
}


def logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def trained_like(family: str, scale: LoraScale, base_dir: Path) -> tuple[Any, Allocation, dict[str, Any]]:
    """Our adapted model with non-zero B and a perturbed head (B = 0 would hide a wrong mapping)."""
    model = tiny_model(family)
    model.save_pretrained(base_dir)
    sites = sites_by_key(discover_sites(model))
    alloc = Allocation(lora=ALLOCATIONS[family])
    apply_allocation(model, list(sites.values()), alloc, scale, seed=4)
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model, alloc, sites


def load_peft(kind: str, base_dir: Path, adapter: Path) -> Any:
    from peft import AutoPeftModelForSequenceClassification, PeftModel
    from transformers import AutoModelForSequenceClassification

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "PeftModel":
            return PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base_dir), adapter)
        return AutoPeftModelForSequenceClassification.from_pretrained(adapter)


@pytest.mark.parametrize("loader", ["PeftModel", "AutoPeftModel"])
@pytest.mark.parametrize("scale", [LoraScale("rslora", 2 * 2**0.5), LoraScale("ratio", 2.0)], ids=lambda s: s.rule)
@pytest.mark.parametrize("family", sorted(ALLOCATIONS))
def test_plain_peft_loads_the_folder_and_gives_our_logits(family: str, scale: LoraScale, loader: str,
                                                          tmp_path: Path) -> None:
    model, alloc, sites = trained_like(family, scale, tmp_path / "base")
    adapter = save_peft_adapter(model, alloc, sites, scale, tmp_path / "adapter", base_model_id=str(tmp_path / "base"))
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    batch = tiny_batch()
    peft_model = load_peft(loader, tmp_path / "base", adapter)
    torch.testing.assert_close(logits(peft_model, batch), logits(model, batch), atol=1e-5, rtol=0)
    # every adapted module got our rank and our scale
    inner = peft_model.base_model.model
    for key, rank in alloc.lora.items():
        module = inner.get_submodule(sites[key].name)
        assert module.lora_A["default"].weight.shape == (rank, sites[key].d_in), key
        assert module.scaling["default"] == pytest.approx(scale.at(rank)), key


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_config_is_relative_and_adapts_the_bare_backbone(family: str, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    scale = LoraScale("rslora", 2.0)
    model, alloc, sites = trained_like(family, scale, tmp_path / "base")
    adapter = save_peft_adapter(model, alloc, sites, scale, tmp_path / "adapter", base_model_id="org/some-model")
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == "org/some-model"
    prefix = model.base_model_prefix
    assert saved["target_modules"] == sorted(relative_name(sites[k].name, prefix) for k in alloc.lora)
    assert not any(t.startswith(prefix + ".") for t in saved["target_modules"])
    config = LoraConfig.from_pretrained(adapter)
    config.task_type = None
    config.modules_to_save = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bare = get_peft_model(AutoModel.from_pretrained(tmp_path / "base"), config)
    n_lora = sum(p.numel() for n, p in bare.named_parameters() if "lora_" in n)
    assert n_lora == alloc.params(sites)  # every site found, at its rank, from the backbone alone


def test_base_model_id_is_never_a_local_path_for_the_packaged_model() -> None:
    assert public_model_id(None) == PACKAGED_PUBLIC_ID
    assert public_model_id("org/name") == "org/name"


def test_refuses_allocations_peft_cannot_express(tmp_path: Path) -> None:
    model = tiny_model("bert")
    sites = sites_by_key(discover_sites(model))
    alloc = Allocation(lora={"L0.q": 1}, elements={"shortcut": [{"layer": 0, "ctype": "residual_1", "rank": 1}]})
    with pytest.raises(ValueError, match="LoRA-only"):
        save_peft_adapter(model, alloc, sites, LoraScale("rslora", 2.0), tmp_path / "a", base_model_id="x")


def test_lora_dropout_is_written_and_peft_loads_it(tmp_path: Path) -> None:
    """A run trained with --lora-dropout 0.1: its adapter says so, so PEFT users who continue training match it."""
    scale = LoraScale("rslora", 2 * 2**0.5)
    model, alloc, sites = trained_like("bert", scale, tmp_path / "base")
    adapter = save_peft_adapter(model, alloc, sites, scale, tmp_path / "adapter", base_model_id=str(tmp_path / "base"),
                                lora_dropout=0.1)
    assert json.loads((adapter / "adapter_config.json").read_text())["lora_dropout"] == 0.1
    peft_model = load_peft("PeftModel", tmp_path / "base", adapter)
    inner = peft_model.base_model.model
    for key in alloc.lora:
        dropout = inner.get_submodule(sites[key].name).lora_dropout["default"]
        assert isinstance(dropout, torch.nn.Dropout) and dropout.p == pytest.approx(0.1), key
    batch = tiny_batch()  # dropout is off in eval mode: the same logits as ours
    torch.testing.assert_close(logits(peft_model, batch), logits(model, batch), atol=1e-5, rtol=0)
    # The default stays PEFT's "no dropout" (an nn.Identity), as heterosearch trains by default.
    plain = save_peft_adapter(model, alloc, sites, scale, tmp_path / "plain", base_model_id=str(tmp_path / "base"))
    assert json.loads((plain / "adapter_config.json").read_text())["lora_dropout"] == 0.0
