"""Streaming scoring (proxies/settings.py, sketch.py, streaming.py) against the exact path as oracle.

Tiny random Llama-style models whose site widths (48-160) are well above the sketch widths
(k = 24, l = 40 at r_max 8, oversample 16), so the sketches are genuinely lossy here.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from heterosearch.errors import UserError
from heterosearch.models import discover_sites
from heterosearch.proxies import score_candidates
from heterosearch.proxies.settings import ScoringOptions, sketch_widths
from heterosearch.proxies.state import data_gradients
from heterosearch.proxies.streaming import sketch_pass
from tests.tiny_models import tiny_batch

R_MAX = 8
OVERSAMPLE = 16
SPACE = "name: small\nversion: 1\nkinds:\n  lora:\n    roles: [q, k, v, o, ffn_gate, ffn_in, ffn_out]\n" \
        "    ranks: [0, 1, 2, 3, 4, 6, 8]\n    lora_alpha: 16\n"


def _llama(layers: int = 2, hidden: int = 96, inter: int = 160, seed: int = 0) -> Any:
    import transformers as tf

    cfg = tf.LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=inter, max_position_embeddings=64, vocab_size=100, num_labels=2,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    return tf.AutoModelForSequenceClassification.from_config(cfg, dtype=torch.float32).eval()


def _top(values: torch.Tensor, n: int) -> torch.Tensor:
    """The first n values, zero-padded (the sketch drops directions it sees as numerically zero)."""
    return torch.cat([values[:n], values.new_zeros(max(0, n - len(values)))])


@pytest.fixture(scope="module")
def setup(one_thread_module: None) -> dict[str, Any]:
    model = _llama()
    sites = discover_sites(model)
    batches = [tiny_batch(8, 16, seed=i) for i in range(3)]
    opts = ScoringOptions("streaming", oversample=OVERSAMPLE)
    G, _ = data_gradients(model, sites, batches)  # noqa: N806
    sketches, _ = sketch_pass(model, sites, batches, R_MAX, sketch_widths(R_MAX, OVERSAMPLE), 0, opts)
    return {"model": model, "sites": sites, "batches": batches, "opts": opts, "G": G, "sketches": sketches}


def test_sketch_widths_are_below_the_site_widths(setup: dict[str, Any]) -> None:
    k, l, s = sketch_widths(R_MAX, OVERSAMPLE)  # noqa: E741
    assert max(k, l) < min(min(x.d_in, x.d_out) for x in setup["sites"])  # else the sketch is trivially exact


def test_top_singular_values_error_is_bounded(setup: dict[str, Any]) -> None:
    """Every site: |sigma_j estimate - sigma_j| <= 8 % of sigma_1 for j <= r_max, and the spectral
    curve (cumulative sigma_j^2) within 15 % at every rank (measured worst: 4.6 % and 7.5 %; these
    random models have flat spectra, the hard case for a sketch)."""
    worst_sigma = worst_curve = 0.0
    for site in setup["sites"]:
        exact = torch.linalg.svdvals(setup["G"][site.key])[:R_MAX]
        est = _top(setup["sketches"][site.key].singular_values(), R_MAX)
        worst_sigma = max(worst_sigma, float(((est - exact).abs() / exact[0]).max()))
        curve_err = (est**2).cumsum(0) / (exact**2).cumsum(0) - 1
        worst_curve = max(worst_curve, float(curve_err.abs().max()))
    assert worst_sigma <= 0.08, worst_sigma
    assert worst_curve <= 0.15, worst_curve
    assert worst_sigma > 0  # the sketch is lossy here: the bound is not vacuous


def test_low_rank_gradient_is_recovered_exactly(setup: dict[str, Any], one_thread_module: None) -> None:
    """Rank G <= 5 tokens < k: G's range lies in span(Y), so the values are exact up to float32."""
    model, sites = setup["model"], setup["sites"]
    one = [tiny_batch(1, 5, seed=7)]
    one[0]["attention_mask"][:] = 1
    G, _ = data_gradients(model, sites, one)  # noqa: N806
    sk, _ = sketch_pass(model, sites, one, R_MAX, sketch_widths(R_MAX, OVERSAMPLE), 0, setup["opts"])
    for site in sites:
        exact = torch.linalg.svdvals(G[site.key])[:5]
        torch.testing.assert_close(_top(sk[site.key].singular_values(), 5), exact, rtol=1e-3, atol=1e-5 * float(exact[0]))


def test_lora_gradient_proxies_are_exact(setup: dict[str, Any]) -> None:
    """grad_norm, snip (B^T G and G A^T are sketch columns) and synflow (|G| per site) match the oracle."""
    args = (setup["model"], setup["sites"], setup["batches"], ["grad_norm", "snip", "synflow"], R_MAX, 2.0, 0)
    exact = score_candidates(*args, options="exact")
    stream = score_candidates(*args, options=setup["opts"])
    assert stream.meta["scoring"]["method"] == "streaming" and exact.meta["scoring"]["method"] == "exact"
    for proxy in ("grad_norm", "snip", "synflow"):
        for key, curve in exact.curves[proxy].items():
            torch.testing.assert_close(torch.tensor(stream.curves[proxy][key]), torch.tensor(curve), rtol=1e-4, atol=0)
    assert stream.meta["mean_loss"] == pytest.approx(exact.meta["mean_loss"], rel=1e-6)


def test_allocations_objective_within_one_percent(setup: dict[str, Any], tmp_path: Any) -> None:
    """The streaming-chosen allocation, valued by the exact scores, is within 1 % of the exact optimum."""
    from heterosearch.optimize.build import build_problem
    from heterosearch.space import load_space

    (tmp_path / "small.yaml").write_text(SPACE)
    space = load_space(tmp_path / "small.yaml")
    model, sites, batches = setup["model"], setup["sites"], setup["batches"]
    exact = score_candidates(model, sites, batches, ["spectral"], R_MAX, space.lora.scaling, 0, options="exact")
    stream = score_candidates(model, sites, batches, ["spectral"], R_MAX, space.lora.scaling, 0, options=setup["opts"])
    full = sum(s.d_in + s.d_out for s in sites) * R_MAX
    for budget in (full // 8, full // 3):
        truth = build_problem(space, sites, exact, "spectral", budget)
        best = truth.solve()
        chosen = build_problem(space, sites, stream, "spectral", budget).solve()
        value, params = truth.evaluate(chosen.choice)
        assert params <= budget
        assert value >= 0.99 * best.value, (budget, value, best.value)


def test_micro_batches_and_checkpointing_give_the_same_gradients(setup: dict[str, Any]) -> None:
    model, sites, batches = setup["model"], setup["sites"], setup["batches"]
    before = [(n, p.clone()) for n, p in model.named_parameters()]
    G2, losses2 = data_gradients(model, sites, batches, micro_batch=3, checkpointing=True)  # noqa: N806
    for site in sites:
        torch.testing.assert_close(G2[site.key], setup["G"][site.key], rtol=1e-4, atol=1e-7)
    opts = ScoringOptions("streaming", micro_batch=3, checkpointing=True, oversample=OVERSAMPLE)
    sk, _ = sketch_pass(model, sites, batches, R_MAX, sketch_widths(R_MAX, OVERSAMPLE), 0, opts)
    for site in sites:
        ref = setup["sketches"][site.key]
        for name in ("Y", "Z", "S"):
            a, b = getattr(sk[site.key], name), getattr(ref, name)
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5 * float(b.abs().max()))
    # the model is left as found: weights, flags, modes, checkpointing off
    assert not getattr(model, "is_activation_checkpointing", model.is_gradient_checkpointing) and not model.training
    assert not any(m.training for m in model.modules())
    assert all(torch.equal(p, q) and p.grad is None for (_, q), p in zip(before, model.parameters()))


def test_bf16_streaming_is_close(setup: dict[str, Any]) -> None:
    """Scoring in the training precision (bf16 autocast), sketches in float32: top values within 10 %."""
    opts = ScoringOptions("streaming", precision="bf16", oversample=OVERSAMPLE)
    sk, _ = sketch_pass(setup["model"], setup["sites"], setup["batches"], R_MAX, sketch_widths(R_MAX, OVERSAMPLE), 0,
                        opts)
    for site in setup["sites"]:
        ref = setup["sketches"][site.key].singular_values()[:3]
        assert sk[site.key].Y.dtype == torch.float32
        torch.testing.assert_close(sk[site.key].singular_values()[:3], ref, rtol=0.1, atol=0.02 * float(ref[0]))


def test_auto_is_exact_on_small_models_and_options_are_checked(setup: dict[str, Any]) -> None:
    from heterosearch.proxies.settings import AUTO_EXACT_BYTES, exact_bytes

    sites = setup["sites"]
    assert exact_bytes(sites) < AUTO_EXACT_BYTES and ScoringOptions().resolve(sites) == "exact"
    big = [type("S", (), {"d_in": 8192, "d_out": 8192})()] * 4
    assert ScoringOptions().resolve(big) == "streaming" and ScoringOptions("exact").resolve(big) == "exact"
    args = (setup["model"], sites, setup["batches"][:1], ["spectral"], R_MAX, 2.0, 0)
    assert score_candidates(*args).curves == score_candidates(*args, options="exact").curves
    for bad in ({"method": "fast"}, {"micro_batch": 0}, {"precision": "fp8"}, {"oversample": 0}):
        with pytest.raises(UserError):
            ScoringOptions(**bad)


def test_shortcuts_are_scored_from_sketches(setup: dict[str, Any], tmp_path: Any) -> None:
    """Shortcut candidates on the streaming path: each d x d G is sketched in the shortcut pass,
    never formed. grad_norm and snip read the exact B^T G and G A^T, so they match the exact
    path to float32 rounding; spectral reads estimated singular values (bound as for LoRA sites)."""
    from heterosearch.proxies.kinds import score_space
    from heterosearch.space import load_space

    (tmp_path / "sc.yaml").write_text(SPACE + "  shortcut:\n    types: [residual_1, shortcut_sa]\n    ranks: [0, 2, 4, 8]\n")
    space = load_space(tmp_path / "sc.yaml")
    args = (setup["model"], setup["sites"], setup["batches"], space, ["grad_norm", "snip", "spectral"], 0)
    exact = score_space(*args, "exact").kinds
    stream = score_space(*args, ScoringOptions("streaming", oversample=OVERSAMPLE)).kinds
    for proxy, tol in (("grad_norm", 1e-4), ("snip", 1e-4), ("spectral", 0.15)):  # measured: 0.5 % worst
        ex, st = exact[proxy]["shortcut"], stream[proxy]["shortcut"]
        assert ex.keys() == st.keys() and len(ex) >= 3
        errs = [abs(b / a - 1) for key in ex for a, b in zip(ex[key][1:], st[key][1:]) if a > 0]
        assert errs and max(errs) <= tol, (proxy, max(errs))
        if proxy == "spectral":
            assert max(errs) > 0  # a sketch, not the exact path in disguise


def test_mos_pools_are_scored_from_the_sketched_singular_values(setup: dict[str, Any], tmp_path: Any) -> None:
    """A MoS pool's value needs only its members' top singular values: streaming matches exact
    within the sketch's spectral-curve error (15 %, as above), and is not identical (it is a sketch)."""
    from heterosearch.proxies.kinds import score_space
    from heterosearch.space import load_space

    (tmp_path / "mos.yaml").write_text(SPACE + "  mos:\n    roles: [q, v, ffn_in]\n    equivalent_ranks: [0, 2, 4]\n"
                                       "    site_ranks: [2, 4, 8]\n    shards: 2\n    private_rank: 1\n")
    space = load_space(tmp_path / "mos.yaml")
    args = (setup["model"], setup["sites"], setup["batches"], space, ["spectral"], 0)
    exact = score_space(*args, "exact").kinds["spectral"]["mos"]
    stream = score_space(*args, ScoringOptions("streaming", oversample=OVERSAMPLE)).kinds["spectral"]["mos"]
    pairs = [(stream[role][label], v) for role, options in exact.items() for label, v in options.items()]
    assert len(pairs) >= 3 and all(v > 0 for _, v in pairs)
    worst = max(abs(s / v - 1) for s, v in pairs)
    assert 0 < worst <= 0.15, worst
