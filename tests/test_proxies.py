"""Zero-cost proxies: the shared scoring pass is exact, non-degenerate, seeded and leaves the model alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from heterosearch.adapters import apply_allocation
from heterosearch.errors import UserError
from heterosearch.models import discover_sites, sites_by_key
from heterosearch.proxies import PROXIES, ProxyError, Scores, SiteState, check_scores, score_candidates
from heterosearch.proxies.base import lora_grads
from heterosearch.proxies.state import SCORING_STATE, data_gradients, synflow_gradients, virtual_adapter
from heterosearch.space.allocation import Allocation
from tests.tiny_models import tiny_batch, tiny_model

ALL = ["grad_norm", "snip", "synflow", "spectral"]
R_MAX = 8
SCALING = 2.0
FAMILIES = ("bert", "gpt2")


# One torch thread for the whole module (tests/conftest.py): tiny matmuls run faster on one thread
# than on two on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETEROSEARCH_QUIET", "1")


def batches(n: int = 2) -> list[dict[str, torch.Tensor]]:
    return [tiny_batch(seed=i) for i in range(n)]


def score(model: nn.Module, seed: int = 0, proxies: list[str] = ALL) -> Scores:
    return score_candidates(model, discover_sites(model), batches(), proxies, r_max=R_MAX, scaling=SCALING, seed=seed)


_CACHE: dict[tuple[str, int], Scores] = {}


def cached_scores(family: str, seed: int = 0) -> Scores:
    if (family, seed) not in _CACHE:
        _CACHE[(family, seed)] = score(tiny_model(family), seed)
    return _CACHE[(family, seed)]


# ---------------------------------------------------------------- (a) the model is left alone


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["eval", "train", "mixed"])
def test_scoring_leaves_the_model_bit_identical(family: str, mode: str) -> None:
    model = tiny_model(family)
    model.train(mode != "eval")
    if mode == "mixed":
        model.get_input_embeddings().eval()  # a frozen part kept in eval mode inside a training model
    sites = discover_sites(model)
    # Mixed requires_grad flags and pre-existing .grad tensors, on a site weight and on the head.
    for name, p in model.named_parameters():
        if "embed" in name or "wte" in name or "wpe" in name:
            p.requires_grad_(False)
    site_weight = model.get_submodule(sites[1].name).weight
    head = [p for n, p in model.named_parameters() if n.startswith(("classifier", "score"))][0]
    site_weight.grad = torch.randn_like(site_weight)
    head.grad = torch.randn_like(head)

    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    grads = {n: (p.grad, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    assert len(set(modes.values())) == (2 if mode == "mixed" else 1)

    scores = score_candidates(model, sites, batches(), ALL, r_max=R_MAX, scaling=SCALING, seed=0)
    assert set(scores.curves) == set(ALL)

    after = model.state_dict()
    assert list(after) == list(state)
    for k, v in state.items():
        assert torch.equal(after[k], v), k
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    for n, p in model.named_parameters():
        obj, value = grads[n]
        assert p.grad is obj, n
        if value is not None:
            assert torch.equal(p.grad, value), n
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert not any(isinstance(m, nn.Module) and type(m).__name__ == "LoraLinear" for m in model.modules())


# ---------------------------------------------------------------- (b) sane, non-degenerate curves


@pytest.mark.parametrize("family", FAMILIES)
def test_curves_are_finite_nested_and_non_degenerate(family: str) -> None:
    scores = cached_scores(family)
    keys = [s.key for s in discover_sites(tiny_model(family))]
    assert scores.site_keys == keys and scores.r_max == R_MAX
    for proxy in ALL:
        curves = scores.curves[proxy]
        assert list(curves) == keys
        for key, curve in curves.items():
            assert len(curve) == R_MAX + 1
            assert all(math.isfinite(v) for v in curve), (proxy, key)
            assert curve[0] == 0.0
            assert curve[1] > 0, (proxy, key)
            # every proxy here is a prefix sum of non-negative per-rank terms
            assert all(b >= a for a, b in zip(curve, curve[1:], strict=False)), (proxy, key)
        for r in range(1, R_MAX + 1):
            assert len({c[r] for c in curves.values()}) == len(curves), (proxy, r)  # sites are told apart
    for key in keys:  # snip and spectral grow strictly with rank (more components, more score)
        for proxy in ("snip", "spectral"):
            c = scores.curves[proxy][key]
            assert c[2] > c[1]
    meta = scores.meta
    assert meta["scoring_state"] == SCORING_STATE
    assert meta["batches"] == 2 and meta["examples"] == 8
    assert meta["seed"] == 0 and meta["scale"] == {"rule": "ratio", "alpha": SCALING}
    assert math.isfinite(meta["mean_loss"]) and meta["mean_loss"] > 0
    assert set(meta["proxies"]) == set(ALL) and meta["proxies"]["synflow"]["source"] == "synflow"


def test_spectral_is_the_top_singular_values_of_g() -> None:
    model = tiny_model("bert")
    sites = discover_sites(model)
    grads, losses = data_gradients(model, sites, batches())
    assert len(losses) == 2
    scores = cached_scores("bert")
    for site in sites[:3]:
        sigma = torch.linalg.svdvals(grads[site.key])
        expected = [0.0, *torch.cumsum(sigma[:R_MAX] ** 2, 0).tolist()]
        assert scores.curves["spectral"][site.key] == pytest.approx(expected, rel=1e-9)
    # spectral is padded with zeros past the matrix rank: a 4x3 G has 3 singular values
    g = torch.randn(4, 3, dtype=torch.float64)
    state = SiteState(g, torch.zeros(6, 3, dtype=torch.float64), torch.zeros(4, 6, dtype=torch.float64), 1.0)
    curve = PROXIES.get("spectral")().curve(state)
    assert curve.shape == (7,)
    assert curve[3] == pytest.approx(float((g**2).sum()))  # sum sigma^2 = ||G||_F^2
    assert torch.equal(curve[3:], curve[3].repeat(4))


# ---------------------------------------------------------------- (c) seeds


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_scores_other_seed_other_virtual_adapter(family: str) -> None:
    first = cached_scores(family, 0)
    again = score(tiny_model(family), seed=0)
    assert again.curves == first.curves  # bit-identical floats
    other = cached_scores(family, 1)
    for proxy in ("snip", "grad_norm", "synflow"):
        for key in first.site_keys:
            assert other.curves[proxy][key][1:] != first.curves[proxy][key][1:], (proxy, key)
    assert other.curves["spectral"] == first.curves["spectral"]  # independent of the virtual adapter


def test_virtual_adapter_seeded_per_site() -> None:
    site = sites_by_key(discover_sites(tiny_model("bert")))["L1.v"]
    A, B = virtual_adapter(site, 4, seed=3)
    A2, B2 = virtual_adapter(site, 4, seed=3)
    assert torch.equal(A, A2) and torch.equal(B, B2)
    assert A.dtype == B.dtype == torch.float64
    assert A.shape == (4, site.d_in) and B.shape == (site.d_out, 4)
    assert A.abs().max() <= 1 / math.sqrt(site.d_in) and B.abs().max() <= 1 / math.sqrt(site.d_out)
    assert torch.count_nonzero(B) == B.numel()
    other = sites_by_key(discover_sites(tiny_model("bert")))["L0.v"]
    assert not torch.equal(virtual_adapter(other, 4, seed=3)[0], A)  # other site, other draw
    assert not torch.equal(virtual_adapter(site, 4, seed=4)[0], A)


# ---------------------------------------------------------------- (d) degenerate states are refused


def test_check_scores_refuses_degenerate_and_non_finite() -> None:
    good = {"L0.q": [0.0, 1.0, 2.0], "L0.v": [0.0, 3.0, 4.0]}
    check_scores("p", good)
    check_scores("p", {"L0.q": [0.0, 0.0, 0.0]})  # one site cannot be degenerate
    with pytest.raises(ProxyError, match="degenerate here: every site scores 0 at rank 1"):
        check_scores("snip", {"L0.q": [0.0, 0.0, 0.0], "L0.v": [0.0, 0.0, 0.0]})
    with pytest.raises(ProxyError, match="degenerate here: every site scores 2.5 at rank 1"):
        check_scores("p", {"L0.q": [0.0, 2.5, 3.0], "L0.v": [0.0, 2.5, 7.0], "L1.q": [0.0, 2.5, 2.5]})
    with pytest.raises(ProxyError, match=r"non-finite scores for 1 site\(s\), e.g. L0.v"):
        check_scores("p", {"L0.q": [0.0, 1.0, 2.0], "L0.v": [0.0, float("nan"), 2.0]})
    with pytest.raises(ProxyError, match="non-finite"):
        check_scores("p", {"L0.q": [0.0, 1.0, float("inf")], "L0.v": [0.0, 1.0, 2.0]})
    assert issubclass(ProxyError, UserError)


def test_score_candidates_refuses_a_zero_b_state(monkeypatch: pytest.MonkeyPatch) -> None:
    import heterosearch.proxies.state as state

    real = state.virtual_adapter

    def b_zero(site: Any, r_max: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        A, B = real(site, r_max, seed)
        return A, torch.zeros_like(B)

    monkeypatch.setattr(state, "virtual_adapter", b_zero)
    model = tiny_model("bert")
    with pytest.raises(ProxyError, match="'snip' is degenerate here: every site scores 0 at rank 1"):
        score(model, proxies=["snip"])
    with pytest.raises(ProxyError, match="'synflow' is degenerate"):
        score(model, proxies=["synflow"])
    assert score(model, proxies=["spectral", "grad_norm"]).curves["grad_norm"]  # still informative


def test_unknown_proxy_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown proxy 'snipp'; did you mean 'snip'"):
        score(tiny_model("bert"), proxies=["snipp"])


# ---------------------------------------------------------------- (e) the shared pass is exact


@pytest.mark.parametrize(
    ("family", "key", "rank"), [("bert", "L1.v", 4), ("bert", "L0.ffn_out", 3), ("gpt2", "L0.qkv", 5)]
)
def test_analytic_lora_gradient_equals_autograd(family: str, key: str, rank: int) -> None:
    data = batches(3)
    model = tiny_model(family)
    sites = discover_sites(model)
    site = sites_by_key(sites)[key]
    G = data_gradients(model, sites, data)[0][key]
    A, B = virtual_adapter(site, R_MAX, seed=5)
    dA, dB = lora_grads(SiteState(G, A, B, SCALING))
    assert dA.shape == (R_MAX, site.d_in) and dB.shape == (site.d_out, R_MAX)
    torch.testing.assert_close(dB, SCALING * G @ A.t())

    # A real LoraLinear with the same A[:r] and B = 0, trained-mode off, gradients summed over batches.
    real = tiny_model(family)
    real_sites = discover_sites(real)
    apply_allocation(real, real_sites, Allocation(lora={key: rank}), scaling=SCALING)
    layer = real.get_submodule(site.name)
    with torch.no_grad():
        layer.hs_lora_A.copy_(A[:rank].float())
    for batch in data:
        real(**batch).loss.backward()
    assert torch.count_nonzero(layer.hs_lora_A.grad) == 0  # B = 0: dL/dA = 0 exactly
    expected = dB[:, :rank].float()
    assert expected.abs().max() > 1e-6  # a real signal, not two zeros
    torch.testing.assert_close(layer.hs_lora_B.grad, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))

    # ... and G is dL/dW0 of the frozen weight itself (GPT-2 Conv1D transposed to (d_out, d_in)).
    w = real.get_submodule(site.name).base_layer.weight
    w.requires_grad_(True)
    for batch in data:
        real(**batch).loss.backward()
    g = w.grad.t() if site.conv1d else w.grad
    torch.testing.assert_close(g.double(), G, rtol=1e-4, atol=1e-6 * float(G.abs().max()))


def test_data_gradients_sum_over_batches() -> None:
    model = tiny_model("bert")
    sites = discover_sites(model)
    data = batches(3)
    total, losses = data_gradients(model, sites, data)
    parts = [data_gradients(model, sites, [b])[0] for b in data]
    for s in sites:
        assert total[s.key].dtype == torch.float64 and total[s.key].shape == (s.d_out, s.d_in)
        torch.testing.assert_close(total[s.key], sum(p[s.key] for p in parts))
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


def test_synflow_gradients_are_non_negative_and_float64() -> None:
    model = tiny_model("gpt2")
    sites = discover_sites(model)
    grads = synflow_gradients(model, sites)
    for s in sites:
        g = grads[s.key]
        assert g.dtype == torch.float64 and g.shape == (s.d_out, s.d_in)
        assert bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0
    assert next(model.parameters()).dtype == torch.float32  # the copy was cast, not the model


# ---------------------------------------------------------------- (f) the B = 0 pitfall


@pytest.mark.parametrize("family", FAMILIES)
def test_snip_is_zero_at_b_zero_but_not_in_the_scoring_state(family: str) -> None:
    model = tiny_model(family)
    sites = discover_sites(model)
    grads, _ = data_gradients(model, sites, batches())
    snip, synflow, grad_norm = (PROXIES.get(p)() for p in ("snip", "synflow", "grad_norm"))
    for s in sites:
        A, B = virtual_adapter(s, R_MAX, seed=0)
        at_init = SiteState(grads[s.key], A, torch.zeros_like(B), SCALING)
        dA, dB = lora_grads(at_init)
        assert torch.count_nonzero(dA) == 0 and torch.count_nonzero(dB) > 0
        assert torch.count_nonzero(snip.curve(at_init)) == 0  # |A dA| + |B dB| = 0 + 0
        assert torch.count_nonzero(synflow.curve(at_init)) == 0
        norm = grad_norm.curve(at_init)  # reduces to ||dL/dB||
        expected = torch.cat([torch.zeros(1, dtype=torch.float64), (dB**2).sum(0).cumsum(0).sqrt()])
        torch.testing.assert_close(norm, expected)
    ours = cached_scores(family).curves["snip"]
    assert all(c[1] > 0 for c in ours.values())


# ---------------------------------------------------------------- (g) one forward + backward per batch


def test_one_forward_per_batch() -> None:
    model = tiny_model("bert")
    sites = discover_sites(model)
    calls: list[int] = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    backward_calls: list[int] = []
    last = model.get_submodule(sites[-1].name)
    bhandle = last.register_full_backward_hook(lambda *_: backward_calls.append(1))
    try:
        data_gradients(model, sites, batches(3))
        assert len(calls) == 3 and len(backward_calls) == 3
        calls.clear()
        backward_calls.clear()
        data = [tiny_batch(n=3, seed=i) for i in range(5)]
        data_proxies = ["grad_norm", "snip", "spectral"]
        scores = score_candidates(model, sites, data, data_proxies, r_max=4, scaling=SCALING, seed=0)
        assert len(calls) == 5 and len(backward_calls) == 5
        assert scores.meta["batches"] == 5 and scores.meta["examples"] == 15
        assert "synflow_pass" not in scores.meta["seconds"] and "data_pass" in scores.meta["seconds"]
    finally:
        handle.remove()
        bhandle.remove()


# ---------------------------------------------------------------- Scores file


def test_scores_table_and_file_roundtrip(tmp_path: Path) -> None:
    scores = cached_scores("bert")
    path = tmp_path / "scores.json"
    scores.save(path)
    again = Scores.load(path)
    assert again.curves == scores.curves and again.sites == scores.sites and again.r_max == R_MAX
    table = again.table("spectral", [0, 2, 8], keys=["L1.v", "L0.q"])
    assert table.shape == (2, 3)
    assert table[0].tolist() == [0.0, scores.curves["spectral"]["L1.v"][2], scores.curves["spectral"]["L1.v"][8]]
    assert table[1, 1] == scores.curves["spectral"]["L0.q"][2]
    with pytest.raises(UserError, match="was not scored"):
        again.table("fisher", [0, 1])
    with pytest.raises(UserError, match="exceeds the scored maximum rank 8"):
        again.table("snip", [0, 16])
    with pytest.raises(UserError, match="run `heterosearch score` first"):
        Scores.load(tmp_path / "none.json")
