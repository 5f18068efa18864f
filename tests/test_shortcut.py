"""The ``shortcut`` kind on tiny models: exact at init, placement, training, scoring, save/load."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file

from heterosearch.adapters import adapter_parameters, count_adapter_params
from heterosearch.adapters.kinds import ADAPTER_KINDS
from heterosearch.adapters.shortcut import (
    CTYPES,
    SCALING,
    ShortcutElement,
    apply_shortcuts,
    candidates,
    remove_shortcuts,
    shortcut_count,
    shortcut_gradients,
    shortcut_params,
    shortcut_store,
)
from heterosearch.models import discover_sites
from tests.tiny_models import tiny_batch, tiny_model

FAMILIES = ("bert", "opt", "llama")
L = 2  # tiny models have 2 layers

# Where each family's terms must land, written out independently of blocks.PLANS:
# (block prefix, h source, attention add point, FFN add point); "in:" = first input, "out:" = output.
WHERE = {
    "bert": ("bert.encoder.layer", "intermediate", "in:attention.output.LayerNorm", "in:output.LayerNorm"),
    "opt": ("model.decoder.layers", "final_layer_norm", "out:self_attn.out_proj", "out:fc2"),
    "llama": ("model.layers", "post_attention_layernorm", "out:self_attn.o_proj", "out:mlp.down_proj"),
}


# One torch thread for the whole module (tests/conftest.py): tiny matmuls run faster on one thread
# than on two on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread_module")


def _batch(model, seed: int = 0) -> dict[str, torch.Tensor]:
    """tiny_batch with pad ids at masked positions (decoders pool the last non-pad token)."""
    b = tiny_batch(seed=seed)
    b["input_ids"] = b["input_ids"].masked_fill(b["attention_mask"] == 0, model.config.pad_token_id)
    return b


def _adapted(family: str, elements, seed: int = 0):
    model = tiny_model(family)
    for p in model.parameters():
        p.requires_grad_(False)
    sites = discover_sites(model)
    apply_shortcuts(model, sites, elements, torch.Generator().manual_seed(seed))
    return model, sites


def _all(rank: int = 2) -> list[ShortcutElement]:
    return [ShortcutElement(layer, c, rank) for layer, c in candidates(L)]


def _terms(model):
    return dict(shortcut_store(model).items())


def _randomise_B(model, seed: int = 1) -> None:  # noqa: N802
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for term in _terms(model).values():
            term.hs_shortcut_B.copy_(torch.randn(term.hs_shortcut_B.shape, generator=g) * 0.2)


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"layer": -1, "ctype": "residual_1", "rank": 2}, "layer"),
        ({"layer": 0, "ctype": "residual_3", "rank": 2}, "ctype"),
        ({"layer": 0, "ctype": "residual_1", "rank": 0}, "rank"),
        ({"layer": 0, "ctype": "shortcut_ffn", "rank": 2}, "layer"),
    ],
)
def test_element_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"ShortcutElement.{field}"):
        ShortcutElement(**kwargs)


def test_element_round_trip_and_candidates():
    e = ShortcutElement(3, "shortcut_ffn", 4)
    assert e.key == "L3.shortcut_ffn"
    assert ShortcutElement.from_dict(e.to_dict()) == e
    with pytest.raises(ValueError, match="unknown fields"):
        ShortcutElement.from_dict({**e.to_dict(), "alpha": 4})
    for n in (1, 2, 5):
        cands = candidates(n)
        assert len(cands) == 4 * n - 1 == len(set(cands))
        assert (0, "shortcut_ffn") not in cands
    assert candidates(1) == [(0, c) for c in CTYPES if c != "shortcut_ffn"]
    kind = ADAPTER_KINDS.get("shortcut")
    assert kind.prefix == "hs_shortcut_" and kind.element is ShortcutElement and kind.apply is apply_shortcuts


# -- exact at init, counting -------------------------------------------------------------------


@pytest.mark.parametrize("config", [*CTYPES, "all"])
@pytest.mark.parametrize("family", ["bert", "distilbert", "opt", "gpt2", "llama"])
def test_exact_at_init_and_counts(family, config):
    elements = _all() if config == "all" else [ShortcutElement(1, config, 3)]
    base = tiny_model(family)
    model, sites = _adapted(family, elements)
    batch = _batch(base)
    with torch.inference_mode():
        want, got = base(**batch).logits, model(**batch).logits
    assert torch.allclose(want, got, atol=1e-6) and torch.equal(want, got)
    assert not shortcut_store(model).cache  # sources are dropped after the forward
    d = base.config.hidden_size
    formula = sum(shortcut_params(d, e.rank) for e in elements)
    numel = sum(p.numel() for n, p in model.named_parameters() if n.rpartition(".")[2].startswith("hs_shortcut_"))
    assert count_adapter_params(model) == shortcut_count(sites, elements) == formula == numel


def test_apply_errors():
    model, sites = _adapted("bert", [ShortcutElement(0, "residual_1", 2)])
    with pytest.raises(ValueError, match="already has"):
        apply_shortcuts(model, sites, [ShortcutElement(0, "residual_1", 2)])
    with pytest.raises(ValueError, match="given twice"):
        apply_shortcuts(model, sites, [ShortcutElement(1, "residual_2", 2)] * 2)
    with pytest.raises(ValueError, match="has 2 layers"):
        apply_shortcuts(model, sites, [ShortcutElement(2, "residual_2", 2)])


# -- placement ---------------------------------------------------------------------------------


def _record(model, family: str, layer: int) -> dict[str, torch.Tensor]:
    """Hooks recording x_l, h_l, h_{l-1}, both add points and the block output of ``layer``.

    Registered after ``apply_shortcuts``, so they see the sums with the terms already added.
    """
    prefix, h_src, attn, ffn = WHERE[family]
    out: dict[str, torch.Tensor] = {}

    def pre(name):
        return lambda m, args: out.__setitem__(name, args[0].detach().clone())

    def post(name):
        return lambda m, args, o: out.__setitem__(name, o.detach().clone())

    block = model.get_submodule(f"{prefix}.{layer}")
    block.register_forward_pre_hook(pre("x"))
    block.register_forward_hook(post("block_out"))
    block.get_submodule(h_src).register_forward_pre_hook(pre("h"))
    model.get_submodule(f"{prefix}.{layer - 1}.{h_src}").register_forward_pre_hook(pre("h_prev"))
    for point, spec in (("attn", attn), ("ffn", ffn)):
        how, _, rel = spec.partition(":")
        module = block.get_submodule(rel)
        if how == "in":
            module.register_forward_pre_hook(pre(point))
        else:
            module.register_forward_hook(post(point))
    return out


@pytest.mark.parametrize("ctype", CTYPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_term_sits_where_documented(family, ctype):
    layer = 1
    base = tiny_model(family)
    model, _ = _adapted(family, [ShortcutElement(layer, ctype, 3)])
    _randomise_B(model)
    term = _terms(model)[f"L{layer}_{ctype}"]
    batch = _batch(base)
    rec_base, rec = _record(base, family, layer), _record(model, family, layer)
    with torch.inference_mode():
        base_out = base(**batch, output_hidden_states=True)
        out = model(**batch, output_hidden_states=True)
    for j in range(layer + 1):  # embeddings and layers < l are untouched
        assert torch.equal(base_out.hidden_states[j], out.hidden_states[j])
    source = {"residual_1": "x", "residual_2": "h", "shortcut_sa": "x", "shortcut_ffn": "h_prev"}[ctype]
    point = "attn" if ctype in ("residual_1", "shortcut_ffn") else "ffn"
    if point == "ffn":
        assert torch.equal(rec["attn"], rec_base["attn"])
    with torch.no_grad():
        expected = term(rec_base[source]).reshape(rec_base[point].shape)
        assert torch.allclose(rec[point] - rec_base[point], expected, atol=1e-5, rtol=1e-4)
        assert expected.abs().max() > 1e-3
    assert not torch.allclose(base_out.logits, out.logits, atol=1e-6)


def test_manual_recompute_bert_residual_2():
    """Post-LN: BertOutput = LN(dense(intermediate(a)) + a + s B A a), a = the FFN input."""
    base = tiny_model("bert")
    model, _ = _adapted("bert", [ShortcutElement(1, "residual_2", 4)])
    _randomise_B(model)
    block = base.bert.encoder.layer[1]  # base modules: the adapted ones carry the hooks
    rec_base, rec = _record(base, "bert", 1), _record(model, "bert", 1)
    batch = _batch(base)
    with torch.inference_mode():
        base(**batch), model(**batch)
        a = rec_base["h"]
        term = _terms(model)["L1_residual_2"]
        manual = block.output.LayerNorm(block.output.dense(block.intermediate(a)) + a + term(a))
    assert torch.allclose(rec["block_out"], manual, atol=1e-5)


def test_manual_recompute_llama_residual_1():
    """Pre-LN: h = x + o_proj(...) + s B A x; out = h + mlp(post_attention_layernorm(h))."""
    base = tiny_model("llama")
    model, _ = _adapted("llama", [ShortcutElement(1, "residual_1", 4)])
    _randomise_B(model)
    block = base.model.layers[1]
    rec_base, rec = _record(base, "llama", 1), _record(model, "llama", 1)
    batch = _batch(base)
    with torch.inference_mode():
        base(**batch), model(**batch)
        x, o = rec_base["x"], rec_base["attn"]
        h = x + o + _terms(model)["L1_residual_1"](x)
        manual = h + block.mlp(block.post_attention_layernorm(h))
    assert torch.allclose(rec["block_out"], manual, atol=1e-5)


def test_manual_recompute_opt_shortcut_ffn():
    """Pre-LN: h_1 = x_1 + out_proj(...) + s B A h_0; out = h_1 + fc2(relu(fc1(final_layer_norm(h_1))))."""
    base = tiny_model("opt")
    model, _ = _adapted("opt", [ShortcutElement(1, "shortcut_ffn", 4)])
    _randomise_B(model)
    block = base.model.decoder.layers[1]
    rec_base, rec = _record(base, "opt", 1), _record(model, "opt", 1)
    batch = _batch(base)
    with torch.inference_mode():
        base(**batch), model(**batch)
        x, o, h0 = rec_base["x"], rec_base["attn"], rec_base["h_prev"]  # h0: (B*T, d) in OPT
        h = x + o + _terms(model)["L1_shortcut_ffn"](h0).reshape(x.shape)
        manual = h + block.fc2(block.activation_fn(block.fc1(block.final_layer_norm(h))))
    assert torch.allclose(rec["block_out"], manual, atol=1e-5)


# -- padding, inference mode, removal, deepcopy ------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_removal_and_deepcopy(family):
    base = tiny_model(family)
    model, _ = _adapted(family, _all())
    _randomise_B(model)
    batch = _batch(base)
    with torch.inference_mode():
        padded = model(**batch).logits
        # row 0 is padded by 3: alone and unpadded it must give the same logits
        alone = model(input_ids=batch["input_ids"][:1, :-3], attention_mask=batch["attention_mask"][:1, :-3]).logits
        assert torch.allclose(padded[:1], alone, atol=1e-5)
        twin = copy.deepcopy(model)
        _randomise_B(twin, seed=7)
        assert torch.equal(model(**batch).logits, padded)  # the copy's hooks use the copy's tensors
        assert not torch.allclose(twin(**batch).logits, padded, atol=1e-4)
        remove_shortcuts(model)
        assert torch.equal(model(**batch).logits, base(**batch).logits)
        assert count_adapter_params(model) == 0


# -- training and save/load --------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_training_reaches_every_tensor_and_save_load(family, tmp_path):
    elements = _all()
    model, sites = _adapted(family, elements)
    batch = _batch(model)
    with torch.no_grad():
        before = model(**batch).logits
    params = adapter_parameters(model)
    assert len(params) == 2 * len(elements) and all(p.requires_grad for p in params.values())
    opt = torch.optim.Adam(params.values(), lr=1e-2)
    for step in range(3):
        opt.zero_grad()
        model(**batch).loss.backward()
        for name, p in params.items():
            if name.endswith("hs_shortcut_B") or step > 0:
                assert p.grad is not None and p.grad.abs().max() > 0, (step, name)
            else:  # B = 0 at the first step: dL/dA = s B^T G = 0
                assert p.grad is None or p.grad.abs().max() == 0, (step, name)
        opt.step()
    with torch.no_grad():
        trained = model(**batch).logits
    assert not torch.allclose(before, trained, atol=1e-5)

    path = tmp_path / "adapter.safetensors"
    save_file({n: p.detach().contiguous() for n, p in params.items()}, str(path))
    fresh, _ = _adapted(family, elements, seed=123)  # different A draws: loading must overwrite them
    missing, unexpected = fresh.load_state_dict(load_file(str(path)), strict=False)
    assert not unexpected and not [m for m in missing if "hs_shortcut_" in m]
    with torch.no_grad():
        assert torch.equal(fresh(**batch).logits, trained)


# -- scoring -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_shortcut_gradients_match_autograd(family):
    """With A = I (rank d) and B = 0, dL/dB = s G A^T = s G, summed over batches."""
    base = tiny_model(family)
    d = base.config.hidden_size
    batches = [_batch(base, seed=0), _batch(base, seed=1)]
    sites = discover_sites(base)
    base.train()
    flags = {n: p.requires_grad for n, p in base.named_parameters()}
    state = {k: v.clone() for k, v in base.state_dict().items()}
    G = shortcut_gradients(base, sites, candidates(L), batches)  # noqa: N806
    assert base.training and {n: p.requires_grad for n, p in base.named_parameters()} == flags
    assert all(p.grad is None for p in base.parameters())
    assert all(torch.equal(v, state[k]) for k, v in base.state_dict().items())
    assert sorted(G) == sorted(f"L{layer}.{c}" for layer, c in candidates(L))

    model, _ = _adapted(family, [ShortcutElement(layer, c, d) for layer, c in candidates(L)])
    with torch.no_grad():
        for term in _terms(model).values():
            term.hs_shortcut_A.copy_(torch.eye(d))
    for b in batches:
        model(**b).loss.backward()
    for name, term in _terms(model).items():
        layer_text, _, ctype = name.partition("_")
        g = G[f"{layer_text}.{ctype}"]
        assert g.dtype == torch.float64 and g.shape == (d, d) and g.abs().max() > 0
        assert torch.allclose(term.hs_shortcut_B.grad.double() / SCALING, g, atol=1e-6, rtol=1e-4), name
