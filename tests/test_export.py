"""Export: PEFT LoraConfig round trip (per-site ranks survive save/load), allocation.json, atomic files."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from heterosearch.errors import UserError
from heterosearch.export import (
    check_peft_roundtrip,
    lora_config,
    peft_adapter_params,
    read_allocation,
    read_json,
    save_lora_config,
    write_allocation,
    write_json,
    write_text,
)
from heterosearch.export.allocation_file import allocation_scale
from heterosearch.models import discover_sites, sites_by_key
from heterosearch.space.allocation import Allocation
from heterosearch.space.scale import LoraScale
from tests.tiny_models import tiny_batch, tiny_model

ALPHA_RATIO = 2.0

# Mixed ranks, some sites off. BERT: L1.o is "...layer.1.attention.output.dense" and L1.ffn_out is
# "...layer.1.output.dense" (a suffix of the other's name): they must keep their own ranks.
ALLOCATIONS = {
    "bert": {"L0.q": 4, "L0.v": 2, "L0.ffn_in": 1, "L1.k": 3, "L1.o": 2, "L1.ffn_out": 5, "L0.o": 6},
    "gpt2": {"L0.qkv": 4, "L0.ffn_out": 2, "L1.o": 3, "L1.ffn_in": 1, "L1.qkv": 4},
}


# One torch thread for the whole module (tests/conftest.py): tiny matmuls run faster on one thread
# than on two on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread_module")


def load_with_peft(config_dir: Path, family: str) -> tuple[Any, list[warnings.WarningMessage]]:
    from peft import PeftConfig, get_peft_model

    config = PeftConfig.from_pretrained(str(config_dir))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = get_peft_model(tiny_model(family), config)
    return model, list(caught)


SCALES = [LoraScale("ratio", 2.0), LoraScale("rslora", 2 * 2**0.5), LoraScale("standard", 8.0)]


@pytest.mark.parametrize("scale", SCALES, ids=lambda s: s.rule)
@pytest.mark.parametrize("family", sorted(ALLOCATIONS))
def test_peft_config_roundtrip_keeps_every_rank(family: str, scale: LoraScale, tmp_path: Path) -> None:
    sites = sites_by_key(discover_sites(tiny_model(family)))
    alloc = Allocation(lora=ALLOCATIONS[family])
    config = lora_config(alloc, sites, scale)
    path = save_lora_config(config, tmp_path)
    assert path == tmp_path / "adapter_config.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json"]  # no temp folder left

    saved = json.loads(path.read_text())
    assert sorted(saved["target_modules"]) == sorted(sites[k].name for k in alloc.lora)  # full names
    assert saved["fan_in_fan_out"] is (family == "gpt2")
    assert saved["lora_dropout"] == 0.0 and saved["task_type"] == "SEQ_CLS"
    assert len(saved["rank_pattern"]) == len(alloc.lora)
    assert all(k.startswith("^") for k in saved["rank_pattern"])

    peft_model, caught = load_with_peft(tmp_path, family)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]
    assert peft_adapter_params(peft_model) == alloc.params(sites) > 0
    trainable_lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n and p.requires_grad)
    assert trainable_lora == alloc.params(sites)

    inner = peft_model.base_model.model
    for key, site in sites.items():
        module = inner.get_submodule(site.name)
        rank = alloc.lora.get(key, 0)
        if rank:
            assert module.lora_A["default"].weight.shape == (rank, site.d_in), key
            assert module.lora_B["default"].weight.shape == (site.d_out, rank), key
            # every rule, every rank: PEFT's s equals ours (ratio via alpha_pattern, rslora via use_rslora)
            assert module.scaling["default"] == pytest.approx(scale.at(rank)), key
        else:
            assert not hasattr(module, "lora_A"), key

    # B = 0 at PEFT's init too: the PEFT model computes the base model's logits.
    batch = {k: v for k, v in tiny_batch().items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(peft_model(**batch).logits, tiny_model(family)(**batch).logits, atol=1e-6, rtol=0)

    assert check_peft_roundtrip(lambda: tiny_model(family), tmp_path, alloc.params(sites)) == alloc.params(sites)
    with pytest.raises(AssertionError, match="expected"):
        check_peft_roundtrip(lambda: tiny_model(family), tmp_path, alloc.params(sites) + 1)


def test_overlapping_names_keep_their_own_ranks(tmp_path: Path) -> None:
    sites = sites_by_key(discover_sites(tiny_model("bert")))
    assert sites["L1.ffn_out"].name == "bert.encoder.layer.1.output.dense"
    assert sites["L1.o"].name == "bert.encoder.layer.1.attention.output.dense"
    # Both orders of ranks: whichever sorts first must not capture the other module.
    for o_rank, ffn_rank in ((2, 7), (7, 2)):
        alloc = Allocation(lora={"L1.o": o_rank, "L1.ffn_out": ffn_rank, "L0.o": 1, "L0.ffn_out": 3})
        out = tmp_path / f"o{o_rank}"
        save_lora_config(lora_config(alloc, sites, ALPHA_RATIO), out)
        model, _ = load_with_peft(out, "bert")
        inner = model.base_model.model
        assert inner.get_submodule(sites["L1.o"].name).lora_A["default"].weight.shape[0] == o_rank
        assert inner.get_submodule(sites["L1.ffn_out"].name).lora_A["default"].weight.shape[0] == ffn_rank
        assert inner.get_submodule(sites["L0.o"].name).lora_A["default"].weight.shape[0] == 1
        assert inner.get_submodule(sites["L0.ffn_out"].name).lora_A["default"].weight.shape[0] == 3
        assert peft_adapter_params(model) == alloc.params(sites)


def test_lora_config_values() -> None:
    sites = sites_by_key(discover_sites(tiny_model("bert")))
    config = lora_config(Allocation(lora={"L0.q": 4, "L0.v": 4, "L1.v": 8}), sites, 1.5, base_model="/models/x")
    assert config.r == 4 and config.lora_alpha == 6.0  # the most common rank is the default
    assert config.rank_pattern == {
        r"^bert\.encoder\.layer\.0\.attention\.self\.query": 4,
        r"^bert\.encoder\.layer\.0\.attention\.self\.value": 4,
        r"^bert\.encoder\.layer\.1\.attention\.self\.value": 8,
    }
    assert config.alpha_pattern[r"^bert\.encoder\.layer\.1\.attention\.self\.value"] == 12.0
    assert config.base_model_name_or_path == "/models/x"
    assert config.fan_in_fan_out is False
    with pytest.raises(ValueError, match="no LoRA sites"):
        lora_config(Allocation(), sites, 2.0)


def test_save_lora_config_replaces_an_old_file(tmp_path: Path) -> None:
    sites = sites_by_key(discover_sites(tiny_model("bert")))
    (tmp_path / "adapter_config.json").write_text("old")
    save_lora_config(lora_config(Allocation(lora={"L0.q": 2}), sites, 2.0), tmp_path / ".")
    assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json"]


def test_adapter_config_is_byte_identical_across_processes(tmp_path: Path) -> None:
    """PEFT writes target_modules in set order, which follows the hash seed: the export must not."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from heterosearch.export.peft_config import lora_config, save_lora_config\n"
        "from heterosearch.models import discover_sites\n"
        "from heterosearch.space.allocation import Allocation\n"
        "from tests.test_export import sites_by_key, tiny_model\n"
        "sites = sites_by_key(discover_sites(tiny_model('bert')))\n"
        "alloc = Allocation(lora={k: 1 + i % 3 for i, k in enumerate(sorted(sites))})\n"
        "save_lora_config(lora_config(alloc, sites, 2.0, base_model='m'), sys.argv[1])\n"
    )
    repo = Path(__file__).resolve().parents[1]
    texts = []
    for seed in ("1", "2", "3"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(repo)}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, cwd=repo)
        texts.append((out / "adapter_config.json").read_bytes())
    assert texts[0] == texts[1] == texts[2]
    assert json.loads(texts[0])["target_modules"] == sorted(json.loads(texts[0])["target_modules"])


# ---------------------------------------------------------------- allocation.json


def test_allocation_file_roundtrip(tmp_path: Path) -> None:
    sites = sites_by_key(discover_sites(tiny_model("bert")))
    alloc = Allocation(lora={"L1.ffn_out": 5, "L0.q": 4, "L0.ffn_in": 1})
    path = tmp_path / "run" / "allocation.json"
    scale = LoraScale("rslora", 4.0)
    written = write_allocation(path, alloc, sites, scale, model="tiny-bert", task="mrpc", budget=1000, seed=3)
    again, data = read_allocation(path)
    assert again == alloc
    assert data == written
    assert data["format"] == "heterosearch.allocation" and data["format_version"] == 1
    assert (data["model"], data["task"], data["budget"], data["seed"]) == ("tiny-bert", "mrpc", 1000, 3)
    assert data["params"] == alloc.params(sites) == 4 * 64 + 1 * 96 + 5 * 96
    assert data["scale"] == {"rule": "rslora", "alpha": 4.0} and allocation_scale(data) == scale
    assert allocation_scale({"scaling": 2.0}) == LoraScale("ratio", 2.0)  # files from before the scale rule
    assert [e["site"] for e in data["elements"]] == ["L0.ffn_in", "L0.q", "L1.ffn_out"]  # by layer, then key
    assert sum(e["params"] for e in data["elements"]) == data["params"]
    row = data["elements"][2]
    assert row == {"kind": "lora", "site": "L1.ffn_out", "module": "bert.encoder.layer.1.output.dense", "layer": 1,
                   "role": "ffn_out", "rank": 5, "alpha": pytest.approx(4.0 * 5**0.5), "params": 480}


def test_read_allocation_rejects(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    write_json(path, {"format": "something-else"})
    with pytest.raises(UserError, match="is not a heterosearch allocation file"):
        read_allocation(path)
    write_json(path, [1, 2])
    with pytest.raises(UserError, match="is not a heterosearch allocation file"):
        read_allocation(path)
    write_json(path, {"format": "heterosearch.allocation", "format_version": 2, "allocation": {"lora": {}}})
    with pytest.raises(UserError, match="format_version 2; this heterosearch reads up to 1"):
        read_allocation(path)
    write_json(path, {"format": "heterosearch.allocation", "format_version": 1, "allocation": {"lora": {"L0.q": -1}}})
    with pytest.raises(UserError, match="ranks >= 0"):
        read_allocation(path)
    path.write_text('{"format": "heterosearch.allocation",\n "x": }')
    with pytest.raises(UserError, match=r"is not valid JSON \(line 2\)"):
        read_allocation(path)
    with pytest.raises(UserError, match="does not exist"):
        read_allocation(tmp_path / "missing.json")


# ---------------------------------------------------------------- atomic writes


def test_write_json_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "x.json"
    write_json(path, {"a": 1, "b": [1, 2]})
    assert path.read_text() == '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}\n'
    assert read_json(path) == {"a": 1, "b": [1, 2]}
    write_json(path, {"a": 2})
    assert read_json(path) == {"a": 2}
    assert os.listdir(path.parent) == ["x.json"]
    write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.json"
    write_json(path, {"version": "old"})
    before = path.read_bytes()

    def no_replace(src: Any, dst: Any) -> None:
        assert Path(src).name.startswith(".x.json.") and Path(src).exists()  # the complete temp file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError, match="No space left"):
        write_json(path, {"version": "new"})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.json"]
    monkeypatch.undo()

    def no_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_json(path, {"version": "new"})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.json"]
    monkeypatch.undo()

    with pytest.raises(TypeError):
        write_json(path, {"not json": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.json"]
