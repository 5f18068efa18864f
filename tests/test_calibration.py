"""Calibration of proxy scores across kinds (proxies/calibration.py, the ``calibration:`` space section).

Tiny random BERT (2 layers, hidden 32), two training steps per option: the point is the wiring
(what is measured, recorded and applied), not the factors' values.
"""

from __future__ import annotations

import copy

import pytest
import torch

from heterosearch.errors import UserError
from heterosearch.models import discover_sites
from heterosearch.optimize.build import build_problem, option_groups
from heterosearch.proxies.calibration import calibrate, factors_for
from heterosearch.proxies.kinds import score_space
from heterosearch.space.calibration import CalibrationSpec
from heterosearch.space.config import SearchSpace
from tests.tiny_models import tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread_module")

KINDS = {
    "lora": {"roles": ["q", "k", "v", "o", "ffn_in", "ffn_out"], "ranks": [0, 1, 2, 4]},
    "bank": {"roles": ["v", "ffn_in"], "ranks": [2], "membership": ["all"], "variants": ["share_a", "share_ab"]},
    "mos": {"roles": ["v"], "equivalent_ranks": [2], "site_ranks": [2], "shards": 2, "private_rank": 1},
    "shortcut": {"ranks": [1, 2]},
}


def space(calibration=None, kinds=KINDS) -> SearchSpace:
    data = {"name": "t", "version": 1, "kinds": kinds}
    if calibration is not None:
        data["calibration"] = calibration
    return SearchSpace.from_dict(data)


@pytest.fixture(scope="module")
def scored():
    model = tiny_model("bert", seed=0)
    sites = discover_sites(model)
    train = [tiny_batch(n=8, seed=i) for i in range(2)]
    val = [tiny_batch(n=8, seed=10 + i) for i in range(2)]
    sp = space({"steps": 2, "per_kind": 2, "val_batches": 2})
    scores = score_space(model, sites, train, sp, ["spectral"], seed=0)
    return model, sites, train, val, sp, scores


def test_calibration_measures_every_kind_and_leaves_the_model(scored):
    model, sites, train, val, sp, scores = scored
    before = copy.deepcopy(model.state_dict())
    record = calibrate(model, sites, sp, scores, "spectral", train, val, sp.calibration, seed=0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(n.startswith("hs_") or ".hs_" in n for n in model.state_dict())
    assert {p["kind"] for p in record["points"]} == {"lora", "bank", "mos", "shortcut"}
    assert all(len([p for p in record["points"] if p["kind"] == k]) <= 2 for k in KINDS)
    assert all(p["score"] > 0 for p in record["points"])
    # Every kind with a positive signal has a factor, LoRA's is 1 (a LoRA-only search is unchanged).
    positive = {p["kind"] for p in record["points"] if p["signal"] > 0}
    assert record["factors"].get("lora") == 1.0 or "lora" not in positive
    assert set(record["factors"]) | set(record["uncalibrated"]) == {"lora", "bank", "mos", "shortcut"}
    # Recomputing gives the same record (seeded, eval mode): the factors are a function of the inputs.
    again = calibrate(model, sites, sp, scores, "spectral", train, val, sp.calibration, seed=0)
    assert [p["signal"] for p in again["points"]] == [p["signal"] for p in record["points"]]


def test_factors_scale_each_kind_before_normalisation(scored):
    _, sites, _, _, sp, scores = scored
    raw = build_problem(sp, sites, scores, "spectral", 10_000)
    factors = {"lora": 1.0, "shortcut": 0.25, "bank": 2.0}
    cal = build_problem(sp, sites, scores, "spectral", 10_000, calibration=factors)
    by_key = {g.key: g for g in raw.all_groups()}
    ratios = {}
    for g in cal.all_groups():
        r = by_key[g.key]
        assert r.labels == g.labels and r.costs == g.costs
        kind = "shortcut" if g.key.startswith("shortcut.") else g.key.split(".")[0]
        kind = {"rank": "lora"}.get(kind, kind)
        nz = [(a, b) for a, b in zip(g.values, r.values) if b]
        if nz:
            ratios.setdefault(kind, set()).update(round(a / b, 9) for a, b in nz)
    # one common normaliser c: kind k's values are factor_k * raw_k / c
    c = {k: min(v) for k, v in ratios.items()}
    assert all(len(v) == 1 for v in ratios.values()), ratios
    assert c["shortcut"] / c["lora"] == pytest.approx(0.25) and c["bank"] / c["lora"] == pytest.approx(2.0)
    assert c["mos"] == pytest.approx(c["lora"])  # a kind without a factor keeps its raw values


def test_lora_only_search_is_unchanged_by_calibration(scored):
    _, sites, _, _, _, scores = scored
    lora_space = space(kinds={"lora": KINDS["lora"]})
    raw = build_problem(lora_space, sites, scores, "spectral", 5_000)
    assert raw.same_as(build_problem(lora_space, sites, scores, "spectral", 5_000, calibration={"lora": 1.0}))


def test_factors_for_reads_the_matching_proxy_only(scored):
    *_, scores = scored
    s = copy.copy(scores)
    s.meta = {**scores.meta, "calibration": {"proxy": "spectral", "factors": {"lora": 1.0, "bank": 0.5}}}
    assert factors_for(s, "spectral") == {"lora": 1.0, "bank": 0.5}
    assert factors_for(s, "grad_norm") is None and factors_for(scores, "spectral") is None


def test_with_head_signal_subtracts_the_head_alone(scored):
    """``signal: with_head``: every option trains with the head, and the head alone's decrease is taken off."""
    from heterosearch.proxies.calibration import measure

    model, sites, train, val, _, scores = scored
    sp = space({"steps": 2, "per_kind": 1, "val_batches": 2, "signal": "with_head"})
    before = copy.deepcopy(model.state_dict())
    record = calibrate(model, sites, sp, scores, "spectral", train, val, sp.calibration, seed=0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    head_alone = measure(model, sites, {}, sp.lora.scaling, train, val, 2, 1e-3, 0, train_head=True)
    assert record["head_alone_decrease"] == pytest.approx(head_alone) and head_alone != 0  # the head trained
    lora = next(p for p in record["points"] if p["kind"] == "lora")
    option = next(o for og in option_groups(sp, sites)
                  if og.key == lora["group"] for o in og.options if str(o.label) == lora["option"])
    with_head = measure(model, sites, {"lora": option.elements}, sp.lora.scaling, train, val, 2, 1e-3, 0, train_head=True)
    assert lora["signal"] == pytest.approx(with_head - head_alone)
    frozen = calibrate(model, sites, space({"steps": 2, "per_kind": 1, "val_batches": 2}), scores, "spectral", train, val,
                       CalibrationSpec(steps=2, per_kind=1, val_batches=2), seed=0)
    assert "head_alone_decrease" not in frozen and frozen["signal"] != record["signal"]


def test_space_section_round_trips_and_refuses_bad_values():
    sp = space({"steps": 3})
    assert sp.calibration == CalibrationSpec(steps=3)
    assert SearchSpace.from_dict({k: v for k, v in sp.to_dict().items() if k != "source"}).calibration == sp.calibration
    assert "calibration" not in space().to_dict()  # spaces without it record what they did before
    assert "signal" not in sp.to_dict()["calibration"]  # the default stays implicit: old records compare equal
    wh = space({"steps": 3, "signal": "with_head"})
    assert wh.calibration.signal == "with_head"
    assert SearchSpace.from_dict({k: v for k, v in wh.to_dict().items() if k != "source"}).calibration == wh.calibration
    for bad in ({"steps": 0}, {"per_kind": "2"}, {"lr": 5}, {"epochs": 1}, {"signal": "trained"}):
        with pytest.raises(UserError, match="calibration"):
            space(bad)
