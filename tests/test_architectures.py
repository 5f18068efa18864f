"""Architectures beyond the first families: DeBERTa-v2/v3, Phi-3, GPT-NeoX, Falcon, Llama; encoder-decoders refused.

Tiny random models built here from configs (hidden 32, 2 layers, no download): the sites each
family has per role, exact counts against the instantiated model (fused shapes included), the
adapted model equal to the base at init, PEFT export of fused modules, a space's ``roles:``
mapping for a naming the table does not know, and the one-line errors around them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from heterosearch.adapters import apply_allocation, count_adapter_params, head_parameters
from heterosearch.errors import UserError
from heterosearch.evidence.baselines import plan_baselines, uniform_baseline
from heterosearch.models import ROLES, discover_sites, sites_by_key
from heterosearch.models.roles import expand_roles, fused_notes, resolve_roles
from heterosearch.space import KNOWN_ROLES, load_space
from heterosearch.space.allocation import Allocation
from tests.tiny_models import tiny_batch

pytestmark = pytest.mark.usefixtures("one_thread_module")

H, FF, V = 32, 64, 100  # hidden, FFN width, vocab


def config(family: str) -> Any:
    import transformers as tf

    common: dict[str, Any] = {"vocab_size": V, "num_labels": 2, "max_position_embeddings": 64}
    if family == "deberta-v2":
        return tf.DebertaV2Config(hidden_size=H, num_hidden_layers=2, num_attention_heads=4, intermediate_size=FF,
                                  pad_token_id=0, **common)
    if family == "phi3":  # 2 kv heads of 4: qkv_proj is (32 + 2 * 16) x 32; gate_up_proj 2 * 64 x 32
        return tf.Phi3Config(hidden_size=H, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             intermediate_size=FF, pad_token_id=0, bos_token_id=1, eos_token_id=2, **common)
    if family == "gpt-neox":
        return tf.GPTNeoXConfig(hidden_size=H, num_hidden_layers=2, num_attention_heads=4, intermediate_size=FF,
                                pad_token_id=0, bos_token_id=1, eos_token_id=2, **common)
    if family == "falcon":  # multi-query: query_key_value is (32 + 2 * 8) x 32; FFN 4 * hidden
        common.pop("max_position_embeddings")
        return tf.FalconConfig(hidden_size=H, num_hidden_layers=2, num_attention_heads=4, pad_token_id=0,
                               bos_token_id=1, eos_token_id=2, **common)
    if family == "llama":
        return tf.LlamaConfig(hidden_size=H, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              intermediate_size=FF, pad_token_id=0, bos_token_id=1, eos_token_id=2, **common)
    if family == "mpnet":  # a naming the built-in table does not know (attn.q, attn.k, ...)
        return tf.MPNetConfig(hidden_size=H, num_hidden_layers=2, num_attention_heads=4, intermediate_size=FF,
                              pad_token_id=1, **common)
    if family == "bart":
        return tf.BartConfig(d_model=H, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                             decoder_attention_heads=4, encoder_ffn_dim=FF, decoder_ffn_dim=FF, pad_token_id=1,
                             bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, **common)
    if family == "t5":
        common.pop("max_position_embeddings")
        return tf.T5Config(d_model=H, d_kv=8, d_ff=FF, num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1,
                           decoder_start_token_id=0, **common)
    raise ValueError(family)


def model_of(family: str, seed: int = 0) -> Any:
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForSequenceClassification.from_config(config(family), dtype=torch.float32).eval()


# role -> (module name within the block, d_in, d_out)
EXPECTED = {
    "deberta-v2": {"q": ("attention.self.query_proj", H, H), "k": ("attention.self.key_proj", H, H),
                   "v": ("attention.self.value_proj", H, H), "o": ("attention.output.dense", H, H),
                   "ffn_in": ("intermediate.dense", H, FF), "ffn_out": ("output.dense", FF, H)},
    "phi3": {"qkv": ("self_attn.qkv_proj", H, H + 2 * 16), "o": ("self_attn.o_proj", H, H),
             "ffn_gate_up": ("mlp.gate_up_proj", H, 2 * FF), "ffn_out": ("mlp.down_proj", FF, H)},
    "gpt-neox": {"qkv": ("attention.query_key_value", H, 3 * H), "o": ("attention.dense", H, H),
                 "ffn_in": ("mlp.dense_h_to_4h", H, FF), "ffn_out": ("mlp.dense_4h_to_h", FF, H)},
    "falcon": {"qkv": ("self_attention.query_key_value", H, H + 2 * 8), "o": ("self_attention.dense", H, H),
               "ffn_in": ("mlp.dense_h_to_4h", H, 4 * H), "ffn_out": ("mlp.dense_4h_to_h", 4 * H, H)},
    "llama": {"q": ("self_attn.q_proj", H, H), "k": ("self_attn.k_proj", H, 16), "v": ("self_attn.v_proj", H, 16),
              "o": ("self_attn.o_proj", H, H), "ffn_gate": ("mlp.gate_proj", H, FF), "ffn_in": ("mlp.up_proj", H, FF),
              "ffn_out": ("mlp.down_proj", FF, H)},
}
FAMILIES = tuple(EXPECTED)
MIXED = (3, 0, 1, 4, 2)  # cycled over the sites: mixed ranks, some sites off


def logits(model: Any) -> torch.Tensor:
    batch = tiny_batch()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_sites_per_role(family: str) -> None:
    sites = discover_sites(model_of(family))
    want = EXPECTED[family]
    assert [s.key for s in sites] == [f"L{i}.{r}" for i in range(2) for r in ROLES if r in want]
    for s in sites:
        inner, d_in, d_out = want[s.role]
        assert s.name.endswith(f".{s.layer}.{inner}") and (s.d_in, s.d_out) == (d_in, d_out)


@pytest.mark.parametrize("family", FAMILIES)
def test_counts_are_exact_and_init_is_the_base_model(family: str) -> None:
    model = model_of(family)
    base = logits(model)
    sites = discover_sites(model)
    alloc = Allocation(lora={s.key: MIXED[i % len(MIXED)] for i, s in enumerate(sites)})
    expected = alloc.params(sites_by_key(sites))  # space/kinds.py count_params, per element
    assert expected == sum(r * (sites_by_key(sites)[k].d_in + sites_by_key(sites)[k].d_out) for k, r in alloc.lora.items())
    apply_allocation(model, sites, alloc, scaling=2.0, seed=0)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = sum(p.numel() for p in head_parameters(model).values())
    assert count_adapter_params(model) == expected == trainable - head
    assert torch.allclose(logits(model), base, atol=1e-6)  # B = 0: the adapted model is the base model


@pytest.mark.parametrize("family", ["phi3", "gpt-neox"])
def test_fused_bank_counts_exact(family: str) -> None:
    from heterosearch.adapters.bank.config import BankElement

    model = model_of(family)
    sites = discover_sites(model)
    alloc = Allocation(lora={"L0.o": 2}, elements={"bank": [BankElement("qkv", (0, 1), 3, "share_a").to_dict()]})
    expected = alloc.params(sites_by_key(sites))
    apply_allocation(model, sites, alloc, scaling=2.0, seed=0)
    assert count_adapter_params(model) == expected


@pytest.mark.parametrize("family", ["phi3", "gpt-neox"])
def test_peft_export_of_fused_modules(family: str, tmp_path: Path) -> None:
    """PEFT adapts the same fused module names at the same ranks: same count, same logits."""
    from peft import PeftModel

    from heterosearch.export.peft_native import save_peft_adapter

    model = model_of(family)
    sites = sites_by_key(discover_sites(model))
    alloc = Allocation(lora={"L0.qkv": 2, "L1.qkv": 3, "L1.o": 1, "L0.ffn_out": 2,
                             ("L1.ffn_gate_up" if family == "phi3" else "L1.ffn_in"): 4})
    apply_allocation(model, list(sites.values()), alloc, 2.0, seed=1)
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():  # non-zero B: a wrong module mapping would show in the logits
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    out = save_peft_adapter(model, alloc, sites, 2.0, tmp_path / "adapter", base_model_id=None)
    targets = json.loads((out / "adapter_config.json").read_text())["target_modules"]
    assert any(t.endswith(EXPECTED[family]["qkv"][0]) for t in targets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft = PeftModel.from_pretrained(model_of(family), out)
    n = sum(p.numel() for name, p in peft.named_parameters() if "lora_" in name)
    assert n == alloc.params(sites)
    assert torch.allclose(logits(peft), logits(model), atol=1e-5)


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_encoder_decoder_is_refused_in_one_line(family: str) -> None:
    with pytest.raises(UserError) as err:
        discover_sites(model_of(family))
    msg = str(err.value)
    assert "\n" not in msg and f"is an encoder-decoder model ({family})" in msg


# ---- fused roles: a space's q, k, v on a fused model -----------------------------------------


def test_fused_roles_stand_in_and_say_so() -> None:
    phi = discover_sites(model_of("phi3"))
    assert expand_roles(("q", "k", "v", "o", "ffn_in", "ffn_out"), phi) == (("qkv", "o", "ffn_gate_up", "ffn_out"), ())
    assert resolve_roles(("q", "v"), phi, "baseline") == ("qkv",)
    notes = fused_notes(("q", "v", "ffn_in", "q"), phi)
    assert notes == [
        "this model fuses q, k, v into one projection per block (qkv_proj): the space's q, v adapt it as one site per "
        "block, role 'qkv'",
        "this model fuses ffn_gate, ffn_in into one projection per block (gate_up_proj): the space's ffn_in adapt it "
        "as one site per block, role 'ffn_gate_up'",
    ]
    llama = discover_sites(model_of("llama"))
    assert fused_notes(("q", "v"), llama) == [] and resolve_roles(("q", "v"), llama, "x") == ("q", "v")
    with pytest.raises(UserError, match=r"^x: role 'qkv' matches none of the model's sites .*\(this model has q, k, v"):
        resolve_roles(("qkv",), llama, "x")


def test_roles_tables_agree() -> None:
    assert KNOWN_ROLES == ROLES


# ---- a role with no site is an error, never a zero-parameter baseline -------------------------


def _ffn_only(sites: list[Any]) -> list[Any]:
    return [s for s in sites if s.role in ("o", "ffn_in", "ffn_out")]  # as DeBERTa looked before: no q, k, v


def test_baseline_on_missing_roles_is_an_error_not_zero_parameters() -> None:
    sites = _ffn_only(discover_sites(model_of("deberta-v2")))
    with pytest.raises(UserError, match=r"^uniform_qv: role 'q' matches none of the sites the space adapts"):
        uniform_baseline(sites, ("q", "v"), 10_000, "uniform_qv", 10_000)
    winner = Allocation(lora={"L0.o": 4})
    plans = plan_baselines(sites, ("q", "v"), (0, 1, 2, 4), 10_000, winner, None, methods=("winner", "uniform_qv"))
    assert isinstance(plans["uniform_qv"], str) and "matches none" in plans["uniform_qv"]
    # On a fused model the same baseline is uniform LoRA on qkv, with its real count.
    neox = discover_sites(model_of("gpt-neox"))
    plan = uniform_baseline(neox, ("q", "v"), 2_000, "uniform_qv", 2_000)
    assert plan.details["roles"] == ["qkv"] and plan.params == plan.details["rank"] * 2 * (H + 3 * H) > 0


def _space_file(tmp_path: Path, roles_block: str = "", lora_roles: str = "[q, k, v, o, ffn_in, ffn_out]",
                baseline: str = "[q, v]") -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(f"name: custom\nversion: 1\n{roles_block}kinds:\n  lora:\n    roles: {lora_roles}\n"
                    f"    ranks: [0, 1, 2, 4]\nbaseline:\n  roles: {baseline}\n", encoding="utf-8")
    return path


def _inputs(tmp_path: Path, family: str, space: Path, budget: int = 2_000) -> Any:
    """RunInputs on a model folder holding only config.json: sites come from a weightless (meta) model."""
    from heterosearch.pipeline.config import RunConfig
    from heterosearch.pipeline.inputs import RunInputs

    folder = tmp_path / family
    config(family).save_pretrained(folder)
    return RunInputs(RunConfig(budget=budget, model=str(folder), space=str(space)))


def test_run_refuses_a_space_role_the_model_lacks(tmp_path: Path) -> None:
    space = _space_file(tmp_path, lora_roles="[q, v, ffn_gate]", baseline="[q, v]")
    with pytest.raises(UserError) as err:
        _inputs(tmp_path, "gpt-neox", space).sites
    assert str(err.value).startswith("search space space.yaml: kinds.lora.roles: role 'ffn_gate' matches none of "
                                     "the model's sites (roles there: qkv, o, ffn_in, ffn_out)")


def test_run_on_a_fused_model_adapts_qkv_and_the_baseline_counts(tmp_path: Path) -> None:
    run = _inputs(tmp_path, "phi3", _space_file(tmp_path))
    assert sorted({s.role for s in run.sites}) == ["ffn_gate_up", "ffn_out", "o", "qkv"]
    assert run.baseline_roles() == ("qkv",)
    run.check_budget()
    alloc, name = run.baseline_allocation()
    assert name.endswith(" on qkv") and alloc.params(run.site_map) > 0


# ---- a space's roles: mapping ------------------------------------------------------------------

MPNET_ROLES = ('roles:\n  q: "attn\\\\.q$"\n  k: "attn\\\\.k$"\n  v: "attn\\\\.v$"\n  o: "attn\\\\.o$"\n'
               '  ffn_in: "^intermediate\\\\.dense$"\n  ffn_out: "^output\\\\.dense$"\n')


def test_roles_mapping_names_the_sites_of_an_unknown_naming(tmp_path: Path) -> None:
    model = model_of("mpnet")
    # The built-in table sees only BERT-like FFN names in MPNet: its q, k, v, o would be missed.
    assert {s.role for s in discover_sites(model)} == {"ffn_in", "ffn_out"}
    space = load_space(_space_file(tmp_path, MPNET_ROLES))
    assert space.site_roles["q"] == "attn\\.q$" and space.to_dict()["roles"] == space.site_roles
    sites = discover_sites(model, space.site_roles)
    assert [s.key for s in sites if s.layer == 1] == ["L1.q", "L1.k", "L1.v", "L1.o", "L1.ffn_in", "L1.ffn_out"]
    assert sites_by_key(sites)["L1.o"].name == "mpnet.encoder.layer.1.attention.attn.o"
    base = logits(model)
    alloc = Allocation(lora={s.key: MIXED[i % len(MIXED)] for i, s in enumerate(sites)})
    apply_allocation(model, sites, alloc, scaling=2.0, seed=0)
    assert count_adapter_params(model) == alloc.params(sites_by_key(sites))
    assert torch.allclose(logits(model), base, atol=1e-6)
    run = _inputs(tmp_path, "mpnet", _space_file(tmp_path, MPNET_ROLES))
    assert [s.key for s in run.sites] == [s.key for s in sites]  # the pipeline uses the mapping too


def test_allocation_file_keeps_the_roles_mapping_for_load_adapters(tmp_path: Path) -> None:
    from heterosearch.export.allocation_file import write_allocation
    from heterosearch.export.loader import load_adapters

    space = load_space(_space_file(tmp_path, MPNET_ROLES))
    sites = sites_by_key(discover_sites(model_of("mpnet"), space.site_roles))
    alloc = Allocation(lora={"L0.q": 2, "L1.o": 3, "L1.ffn_out": 1})
    path = tmp_path / "allocation.json"
    write_allocation(path, alloc, sites, 2.0, space={"name": "custom", "version": 1, "roles": space.site_roles})
    model = load_adapters(model_of("mpnet"), path)
    assert count_adapter_params(model) == alloc.params(sites) == 2 * 64 + 3 * 64 + 1 * 96
    data = json.loads(path.read_text())
    data["space"]["roles"] = {"q": "(("}
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"allocation.json: space.roles.q: bad regular expression '\(\('"):
        load_adapters(model_of("mpnet"), path)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ('roles:\n  q: "(("\n', r"^search space space.yaml: roles.q: bad regular expression '\(\(': missing \)"),
        ('roles:\n  ffn_input: "q"\n', r"^search space space.yaml: roles.ffn_input: unknown role \(did you mean 'ffn_in'\?\)"),
        ('roles:\n  q: ""\n', r"^search space space.yaml: roles.q: expected a non-empty regular expression"),
        ("roles: [q, v]\n", r"^search space space.yaml: roles: expected a mapping of role -> module-name regex"),
    ],
)
def test_bad_roles_mapping_is_one_line(tmp_path: Path, block: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        load_space(_space_file(tmp_path, block))
    assert "\n" not in str(err.value)


def test_roles_pattern_matching_nothing_or_twice_is_one_line(tmp_path: Path) -> None:
    model = model_of("mpnet")
    with pytest.raises(UserError) as err:
        discover_sites(model, {"q": "attn\\.q$", "v": "value"}, "search space s.yaml: roles")
    assert str(err.value).startswith("search space s.yaml: roles.v: pattern 'value' matches no linear module of the "
                                     "model (names within a block: attention.attn.q, attention.attn.k,")
    with pytest.raises(UserError, match=r"module 'mpnet.encoder.layer.0.attention.attn.q' matches the patterns of "
                                        r"roles q and k"):
        discover_sites(model, {"q": "attn\\.q", "k": "attn"})
    with pytest.raises(UserError, match=r"^site L0.ffn_in matched twice: .*narrow the pattern search space roles.ffn_in"):
        discover_sites(model, {"ffn_in": "dense"})


def test_cli_bad_regex_exits_2_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from heterosearch.cli import app

    space = _space_file(tmp_path, 'roles:\n  q: "(("\n')
    result = CliRunner().invoke(app, ["run", "--space", str(space), "--budget", "2k", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "roles.q: bad regular expression" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("family", ["bart"])  # T5: discover_sites above; one CLI run is enough for the exit code
def test_cli_refuses_an_encoder_decoder_in_one_line(family: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from heterosearch.cli import app

    config(family).save_pretrained(tmp_path / family)  # config.json only: sites come from a weightless model
    result = CliRunner().invoke(app, ["run", "--model", str(tmp_path / family), "--budget", "2k",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"is an encoder-decoder model ({family})" in lines[0]
    assert not (tmp_path / "o").exists()
