"""The validated pick (evidence/selection.py): the winner only where it beats uniform_all on validation by more
than the seed noise; hand-checked bounds, both metric directions, and the file schemas that carry it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from heterosearch.evidence.selection import describe_selection, select
from heterosearch.evidence.statistics import summarize
from heterosearch.optimize.tie_rule import lower_bound


def _runs(val: dict[str, list[float]], test: dict[str, list[float]], metric: str = "accuracy") -> dict[str, Any]:
    runs = {}
    for method in val:
        for seed, (v, t) in enumerate(zip(val[method], test[method])):
            runs[f"{method}/{seed}"] = {"method": method, "seed": seed, "splits": {"val": {metric: v}, "test": {metric: t}}}
    return runs


def test_lower_bound_is_the_one_sided_t_bound() -> None:
    # gains 1, 2, 3: mean 2, sd 1, t_{0.95, 2} = 2.919986 -> 2 - 2.919986 / sqrt(3)
    assert lower_bound([1.0, 2.0, 3.0]) == pytest.approx(2 - 2.919986 / math.sqrt(3), abs=1e-5)
    assert lower_bound([0.5]) is None
    assert lower_bound([0.01, 0.01, 0.01]) == pytest.approx(0.01)  # no spread: the bound is the mean


def test_a_winner_clearly_better_on_validation_is_picked_and_its_test_margin_reported() -> None:
    runs = _runs({"winner": [0.82, 0.83, 0.84], "uniform_all": [0.80, 0.80, 0.81]},
                 {"winner": [0.79, 0.80, 0.78], "uniform_all": [0.78, 0.81, 0.77]})
    sel = select(summarize(runs, ["winner", "uniform_all"]), "accuracy")
    assert sel is not None and sel["selected"] == "winner"
    assert sel["val"]["gains"] == pytest.approx([0.02, 0.03, 0.03]) and sel["val"]["lower_bound"] > 0
    # the test split is read for the pick only: its margin may be anything
    assert sel["test"]["diffs"] == pytest.approx([0.01, -0.01, 0.01]) and sel["test"]["mean"] == pytest.approx(0.79)
    assert "validated pick: winner" in describe_selection(sel) and "winner - uniform_all +0.3" in describe_selection(sel)


def test_a_gain_within_the_seed_noise_keeps_uniform_all_with_a_zero_margin() -> None:
    # mean validation gain +1 point, but one seed loses: the bound is below 0, even though the test split favours
    # the winner (the test split never decides)
    runs = _runs({"winner": [0.84, 0.83, 0.79], "uniform_all": [0.80, 0.81, 0.82]},
                 {"winner": [0.90, 0.90, 0.90], "uniform_all": [0.80, 0.80, 0.80]})
    sel = select(summarize(runs, ["winner", "uniform_all"]), "accuracy")
    assert sel["selected"] == "uniform_all" and sel["val"]["mean_gain"] == pytest.approx(0.01)
    assert sel["val"]["lower_bound"] < 0 and "within the seed noise" in sel["why"]
    assert sel["test"]["diffs"] == [0.0, 0.0, 0.0] and sel["test"]["mean"] == pytest.approx(0.80)


def test_a_loss_picks_the_lower_one() -> None:
    runs = _runs({"winner": [0.50, 0.51, 0.49], "uniform_all": [0.60, 0.62, 0.61]},
                 {"winner": [0.5, 0.5, 0.5], "uniform_all": [0.6, 0.6, 0.6]}, metric="loss")
    sel = select(summarize(runs, ["winner", "uniform_all"]), "loss")
    assert sel["selected"] == "winner" and sel["val"]["gains"] == pytest.approx([0.10, 0.11, 0.12])
    flipped = _runs({"winner": [0.60, 0.62, 0.61], "uniform_all": [0.50, 0.51, 0.49]},
                    {"winner": [0.5, 0.5, 0.5], "uniform_all": [0.6, 0.6, 0.6]}, metric="loss")
    assert select(summarize(flipped, ["winner", "uniform_all"]), "loss")["selected"] == "uniform_all"


def test_no_reference_no_pick_and_one_seed_keeps_the_reference() -> None:
    only = _runs({"winner": [0.8], "uniform_qv": [0.7]}, {"winner": [0.8], "uniform_qv": [0.7]})
    assert select(summarize(only, ["winner", "uniform_qv"]), "accuracy") is None
    one = _runs({"winner": [0.9], "uniform_all": [0.7]}, {"winner": [0.9], "uniform_all": [0.7]})
    sel = select(summarize(one, ["winner", "uniform_all"]), "accuracy")
    assert sel["selected"] == "uniform_all" and sel["val"]["lower_bound"] is None and "1 seed" in sel["why"]


def test_the_selection_passes_the_file_schemas() -> None:
    from heterosearch.errors import UserError
    from heterosearch.evidence.frontier_summary import FRONTIER_FILE
    from heterosearch.export.schema import check_document
    from heterosearch.pipeline.files import VERIFY_SEEDS_FILE

    runs = _runs({"winner": [0.82, 0.83, 0.84], "uniform_all": [0.80, 0.80, 0.81]},
                 {"winner": [0.79, 0.80, 0.78], "uniform_all": [0.78, 0.81, 0.77]})
    summary = summarize(runs, ["winner", "uniform_all"])
    sel = select(summary, "accuracy")
    verify = {"metric": "accuracy", "budget": 10, "winner_params": 10, "summary": summary, "selection": sel}
    check_document(verify, VERIFY_SEEDS_FILE)
    check_document({"task": "mrpc", "space": "lora", "proxy": "spectral", "status": "complete",
                    "selection": {"10": sel, "20": None}}, FRONTIER_FILE)
    with pytest.raises(UserError, match="'selection.selected' is missing"):
        check_document({**verify, "selection": {k: v for k, v in sel.items() if k != "selected"}}, VERIFY_SEEDS_FILE)
