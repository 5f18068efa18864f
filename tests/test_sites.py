"""Site discovery on every supported family, and model loading (packaged MiniLM, offline)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from heterosearch.errors import UserError
from heterosearch.models import (
    DEFAULT_MODEL,
    ROLES,
    Site,
    discover_sites,
    load_model,
    num_layers,
    resolve_model,
    site_sort_key,
    sites_by_key,
)
from tests.tiny_models import FAMILIES, tiny_model

ROLES_OF = {
    "bert": ("q", "k", "v", "o", "ffn_in", "ffn_out"),
    "roberta": ("q", "k", "v", "o", "ffn_in", "ffn_out"),
    "distilbert": ("q", "k", "v", "o", "ffn_in", "ffn_out"),
    "opt": ("q", "k", "v", "o", "ffn_in", "ffn_out"),
    "gpt2": ("qkv", "o", "ffn_in", "ffn_out"),
    "llama": ("q", "k", "v", "o", "ffn_gate", "ffn_in", "ffn_out"),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layers", [1, 3])
def test_discover_every_family(family: str, layers: int) -> None:
    model = tiny_model(family, num_layers=layers)
    sites = discover_sites(model)
    roles = ROLES_OF[family]
    assert len(sites) == len(roles) * layers
    assert [s.key for s in sites] == [f"L{i}.{r}" for i in range(layers) for r in roles]
    assert num_layers(sites) == layers
    for s in sites:
        w = model.get_submodule(s.name).weight
        assert s.conv1d == (family == "gpt2")
        assert tuple(w.shape) == ((s.d_in, s.d_out) if s.conv1d else (s.d_out, s.d_in))
    assert sites == sorted(sites) == sorted(sites, key=site_sort_key)
    assert discover_sites(model) == sites  # stable


def test_shapes_of_special_sites() -> None:
    gpt2 = sites_by_key(discover_sites(tiny_model("gpt2")))
    assert (gpt2["L0.qkv"].d_in, gpt2["L0.qkv"].d_out) == (32, 96)
    assert gpt2["L1.ffn_out"].name == "transformer.h.1.mlp.c_proj"
    llama = sites_by_key(discover_sites(tiny_model("llama")))
    assert (llama["L0.k"].d_in, llama["L0.k"].d_out) == (32, 16)  # 2 kv heads of 4
    assert llama["L1.ffn_gate"].name == "model.layers.1.mlp.gate_proj"
    bert = sites_by_key(discover_sites(tiny_model("bert")))
    assert bert["L1.o"].name == "bert.encoder.layer.1.attention.output.dense"
    assert bert["L1.ffn_out"].name == "bert.encoder.layer.1.output.dense"


def test_site_order_follows_roles_not_alphabet() -> None:
    a = Site(0, "ffn_out", "x.layer.0.output.dense", 4, 2)
    b = Site(0, "q", "x.layer.0.attention.self.query", 2, 2)
    c = Site(1, "k", "x.layer.1.attention.self.key", 2, 2)
    assert sorted([c, a, b]) == [b, a, c]
    assert b.key == "L0.q" and "role_index" not in repr(b)
    assert list(sites_by_key([c, a, b])) == ["L0.q", "L0.ffn_out", "L1.k"]
    assert ROLES.index("qkv") < ROLES.index("o")
    with pytest.raises(ValueError):
        Site(0, "query", "x", 2, 2)


def test_tiny_models_run_and_are_seeded() -> None:
    ids = torch.tensor([[3, 4, 5, 6], [3, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    for family in FAMILIES:
        with torch.no_grad():
            out = tiny_model(family)(input_ids=ids, attention_mask=mask).logits
            again = tiny_model(family)(input_ids=ids, attention_mask=mask).logits
        assert out.shape == (2, 2) and out.dtype == torch.float32
        assert torch.equal(out, again)


class _Unknown(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
        self.head = nn.Linear(4, 2)


def test_unknown_architecture_lists_what_it_saw() -> None:
    with pytest.raises(UserError) as err:
        discover_sites(_Unknown())
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("no adaptable sites found in _Unknown: saw 3 linear modules (e.g. encoder.0, encoder.2, head)")
    assert "BERT/RoBERTa, DistilBERT, OPT, GPT-2 and Llama-style" in msg


def test_duplicate_layer_role_is_an_error() -> None:
    model = nn.Module()
    model.a = nn.ModuleDict({"layer": nn.ModuleList([nn.Module()])})
    model.b = nn.ModuleDict({"layer": nn.ModuleList([nn.Module()])})
    for part in (model.a, model.b):
        part["layer"][0].intermediate = nn.Module()
        part["layer"][0].intermediate.dense = nn.Linear(2, 4)
    with pytest.raises(ValueError, match="L0.ffn_in matched twice"):
        discover_sites(model)


# ---- loading ---------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_packaged_minilm_loads_offline_with_reproducible_head(offline: None) -> None:
    model, tok = load_model(None, 2, 0)
    sites = discover_sites(model)
    assert len(sites) == 36 and num_layers(sites) == 6
    assert not model.training and model.dtype == torch.float32
    by_key = sites_by_key(sites)
    assert (by_key["L0.q"].d_in, by_key["L0.q"].d_out) == (384, 384)
    assert (by_key["L5.ffn_in"].d_in, by_key["L5.ffn_in"].d_out) == (384, 1536)
    assert (by_key["L5.ffn_out"].d_in, by_key["L5.ffn_out"].d_out) == (1536, 384)
    assert tok.pad_token is not None and model.config.pad_token_id == tok.pad_token_id

    again, _ = load_model(DEFAULT_MODEL, 2, 0)
    assert torch.equal(model.classifier.weight, again.classifier.weight)
    other, _ = load_model("sentence-transformers/all-MiniLM-L6-v2", 2, 1)
    assert not torch.equal(model.classifier.weight, other.classifier.weight)
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight,
                       other.bert.encoder.layer[0].attention.self.query.weight)


def test_resolve_model(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = resolve_model(None)
    assert resolve_model(DEFAULT_MODEL) == resolve_model("sentence-transformers/all-MiniLM-L6-v2") == packaged
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    assert resolve_model("m") == str(tmp_path / "m")
    assert resolve_model("./m") == str(tmp_path / "m")
    assert resolve_model("facebook/opt-125m") == "facebook/opt-125m"
    assert resolve_model("gpt2") == "gpt2"
    (tmp_path / "file.bin").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        resolve_model("file.bin")


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/model", "~/no-such-model-xyz", "a/b/c"])
def test_missing_path_is_a_user_error(name: str) -> None:
    with pytest.raises(UserError) as err:
        load_model(name, 2, 0)
    assert str(err.value) == f"model path {name!r} does not exist"


def test_unreachable_hub_id_is_a_user_error(offline: None) -> None:
    with pytest.raises(UserError) as err:
        load_model("no-such-org/no-such-model", 2, 0)
    assert str(err.value) == (
        "cannot load model 'no-such-org/no-such-model': not a local folder and the Hugging Face hub is "
        "unreachable (pass --model PATH to a local copy)"
    )


def test_local_gpt2_folder_gets_eos_as_pad_and_regression_head(tmp_path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate("the cat sat on a mat".split())}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>")
    assert tok.pad_token is None
    base = tiny_model("gpt2")
    base.config.pad_token_id = None
    base.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)

    model, tokenizer = load_model(str(tmp_path), 1, 0)
    assert tokenizer.pad_token == "<eos>"
    assert model.config.pad_token_id == tokenizer.pad_token_id == 1
    assert model.config.problem_type == "regression" and model.config.num_labels == 1
    batch = tokenizer(["the cat sat", "a mat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 1)
    assert len(discover_sites(model)) == 8

    (tmp_path / "config.json").unlink()
    with pytest.raises(UserError, match="^cannot load model from "):
        load_model(str(tmp_path), 2, 0)
