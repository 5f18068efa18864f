"""The held-out protocol and the instrument built on it: validation split, statistics,
budget-matched uniform baseline, trivial-model detection and the accuracy-vs-budget frontier."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HETEROSEARCH_QUIET", "1")

from heterosearch.errors import UserError  # noqa: E402
from heterosearch.evidence.statistics import paired_comparison, paired_interval, seeds_needed  # noqa: E402
from heterosearch.tasks._loading import Split  # noqa: E402
from heterosearch.tasks.splits import carve_validation  # noqa: E402
from tests.test_verify import Counter, _tiny_world  # noqa: E402

ROLES = ["q", "k", "v", "o", "ffn_in", "ffn_out"]


@dataclass
class FakeSite:
    key: str
    role: str
    layer: int
    d_in: int
    d_out: int


def minilm_sites() -> list[FakeSite]:
    """The 36 sites of all-MiniLM-L6-v2 (d 384, FFN 1536): every site at rank r costs 41,472 r."""
    return [FakeSite(f"L{la}.{r}", r, la, 1536 if r == "ffn_out" else 384, 1536 if r == "ffn_in" else 384)
            for la in range(6) for r in ROLES]


def _split(labels: list[Any]) -> Split:
    return Split(texts=[(f"s{i}",) for i in range(len(labels))], labels=labels, source="mem")


# ------------------------------------------------------------------ validation split
def test_validation_split_is_stratified_disjoint_and_seeded() -> None:
    labels = [1] * 700 + [0] * 300
    c = carve_validation(_split(labels), 0.1, split_seed=0, classification=True)
    assert len(c.val) == 100 and len(c.train) == 900
    assert set(c.val_index).isdisjoint(c.train_index) and sorted(c.val_index + c.train_index) == list(range(1000))
    assert c.val.labels.count(1) == 70 and c.val.labels.count(0) == 30  # the file's balance, exactly
    again = carve_validation(_split(labels), 0.1, split_seed=0, classification=True)
    other = carve_validation(_split(labels), 0.1, split_seed=1, classification=True)
    assert again.val_index == c.val_index and other.val_index != c.val_index
    assert [c.train.texts[i] for i in range(3)] == [(f"s{i}",) for i in c.train_index[:3]]


def test_validation_split_regression_and_bad_fractions() -> None:
    c = carve_validation(_split([float(i) for i in range(50)]), 0.2, split_seed=3, classification=False)
    assert len(c.val) == 10 and len(c.train) == 40
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(UserError, match="val-fraction"):
            carve_validation(_split([0, 1] * 10), bad, 0, True)
    with pytest.raises(UserError, match="cannot be split"):
        carve_validation(_split([0, 1]), 0.01, 0, True)  # rounds to an empty validation split


# ------------------------------------------------------------------ statistics
def test_paired_interval_matches_the_t_formula() -> None:
    from scipy import stats

    d = np.array([0.01, 0.03, 0.02, 0.00])
    lo, hi = paired_interval(d)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert lo == pytest.approx(d.mean() - half) and hi == pytest.approx(d.mean() + half)
    assert paired_interval([0.1]) is None


def test_seeds_needed_is_the_smallest_n_with_enough_power() -> None:
    from scipy import stats

    for sd in (0.004, 0.01, 0.02):
        n = seeds_needed(sd, 0.01)
        assert n is not None

        def need(k: int, sd: float = sd) -> float:
            return ((stats.t.ppf(0.975, k - 1) + stats.t.ppf(0.8, k - 1)) * sd / 0.01) ** 2

        assert n >= need(n) and (n == 2 or n - 1 < need(n - 1))
    assert seeds_needed(0.01, 0.01) == 10  # ~ (2.26 + 0.88)^2 at a paired sd of 1 point
    assert seeds_needed(0.0, 0.01) == 2
    assert seeds_needed(1.0, 0.0001) is None  # beyond the cap


def test_paired_comparison_reports_interval_and_seeds() -> None:
    a = {0: 0.80, 1: 0.82, 2: 0.79}
    b = {0: 0.78, 1: 0.80, 2: 0.78}
    out = paired_comparison(a, b)
    assert out["ci95"][0] < out["mean_diff"] < out["ci95"][1]
    assert out["seeds_for_1pt"] == seeds_needed(float(np.std([0.02, 0.02, 0.01], ddof=1)), 0.01)


# ------------------------------------------------------------------ baselines and trivial models
def test_uniform_all_is_mixed_to_within_two_percent() -> None:
    from heterosearch.evidence.baselines import TOLERANCE, uniform_baseline

    roles, sites = ROLES, minilm_sites()
    # MiniLM: every site at rank r costs 41,472 r, so 41.5k, 83k and 0.5M are r = 1, 2, 12 exactly.
    for budget, rank in ((41_500, 1), (83_000, 2), (500_000, 12)):
        p = uniform_baseline(sites, roles, budget, "uniform_all", budget, mixed=True)
        assert set(p.allocation.lora.values()) == {rank} and p.params == 41_472 * rank
    p = uniform_baseline(sites, roles, 60_000, "uniform_all", 60_000, mixed=True)
    assert 60_000 * (1 - TOLERANCE) <= p.params <= 60_000 and set(p.allocation.lora.values()) == {1, 2}
    plain = uniform_baseline(sites, roles, 60_000, "uniform_all", 60_000)
    assert plain.params == 41_472  # without mixing: 31 % under the budget


def test_trivial_models_are_detected() -> None:
    from heterosearch.train.loop import is_trivial

    assert is_trivial([1] * 100, False, {})
    assert is_trivial([1] * 995 + [0] * 5, False, {})
    assert not is_trivial([1] * 90 + [0] * 10, False, {})
    assert is_trivial([0.1, 0.2], True, {"pearson": 0.05})
    assert not is_trivial([0.1, 0.2], True, {"pearson": 0.6})


# ------------------------------------------------------------------ the frontier, end to end on a tiny BERT
def test_frontier_searches_trains_resumes_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from heterosearch.evidence.frontier import frontier

    torch.set_num_threads(1)
    model_dir, glue = _tiny_world(tmp_path)
    out = tmp_path / "front"
    kwargs: dict[str, Any] = dict(task="mrpc", budgets=[2688, 5376], seeds=[2, 1], out=out,
                                  methods="winner,uniform_qv,uniform_all,random", model=str(model_dir),
                                  data_dir=str(glue), trials=6, max_train_steps=2)
    counter = Counter(monkeypatch)
    doc = frontier(**kwargs)
    assert doc["status"] == "complete" and doc["budgets"] == [2688, 5376]
    assert len(counter.calls) == 4 * 2 + 4 * 1  # every method x seed, each once
    for b, n in (("2688", 2), ("5376", 1)):
        assert set(doc["points"][b]) == {"winner", "uniform_qv", "uniform_all", "random"}
        for m, p in doc["points"][b].items():
            assert p["n"] == n and p["test"]["n"] == n and p["params"]["max"] <= int(b) * 1.02, (b, m)
            assert p["val"]["n"] == n
        assert set(doc["paired"][b]) == {"uniform_qv", "uniform_all", "random"}
    assert doc["paired"]["2688"]["uniform_all"]["ci95"] is not None  # 2 seeds: an interval
    assert doc["paired"]["5376"]["uniform_all"]["ci95"] is None  # 1 seed: none
    assert doc["splits"]["roles"]["test"].startswith("report only")
    for b in ("2688", "5376"):  # what each budget's search did: the additive proxy's winner is the knapsack's or Optuna's
        s = doc["search"][b]
        assert s["objective"] == "proxy" and s["winner_source"] in ("exact", "optuna") and s["trials"] >= 6
        assert "knapsack" not in s and "margin" not in s
    on_disk = json.loads((out / "frontier.json").read_text())
    assert on_disk["points"] == doc["points"]
    one = doc["selection"]["5376"]  # one seed: no noise estimate, so uniform_all is kept and its margin is 0
    assert one["selected"] == "uniform_all" and one["val"]["lower_bound"] is None and one["test"]["diffs"] == [0.0]
    two = doc["selection"]["2688"]
    gains = [doc["points"]["2688"]["winner"]["val"]["values"][s] - doc["points"]["2688"]["uniform_all"]["val"]["values"][s]
             for s in ("0", "1")]
    assert two["val"]["gains"] == pytest.approx(gains) and (two["selected"] == "winner") == (two["val"]["lower_bound"] > 0)
    assert json.loads((out / "b2688" / "verify_seeds.json").read_text())["selection"] == two  # verify wrote the same

    counter.calls.clear()
    again = frontier(**kwargs)  # resumes: nothing retrained, the same numbers
    assert counter.calls == [] and again["points"] == doc["points"]

    from heterosearch.report.render import render_run_report

    text = render_run_report(out).read_text()
    assert "Accuracy against budget" in text and "plots/frontier.png" in text and (out / "plots/frontier.png").is_file()
    assert "Search per budget" in text and "2,688: proxy, winner from " in text
    assert "Validated pick per budget" in text and "5,376: uniform_all (1 seed: no estimate" in text

    with pytest.raises(UserError, match="other settings"):
        frontier(**{**kwargs, "proxy": "grad_norm"})
    with pytest.raises(UserError, match="one per budget"):
        frontier(**{**kwargs, "seeds": [1, 2, 3]})


def test_frontier_with_a_trained_objective_reports_its_margin_over_the_knapsack(tmp_path: Path) -> None:
    import torch

    from heterosearch.evidence.frontier import frontier
    from heterosearch.report.render import render_run_report

    torch.set_num_threads(1)
    model_dir, glue = _tiny_world(tmp_path)
    out = tmp_path / "front-train"
    doc = frontier(task="mrpc", budgets=[2688], seeds=[1], out=out, methods="winner,uniform_all", model=str(model_dir),
                   data_dir=str(glue), objective="train", train_steps=3, trials=2, max_train_steps=2)
    s = doc["search"]["2688"]
    assert s["objective"] == "train" and s["train_steps"] == 3 and s["winner_source"] != "exact"
    assert s["rung_steps"] == 1  # the default rung: a third of the steps
    search = json.loads((out / "b2688" / "search.json").read_text())
    assert s["best"] == search["best_objective"] and s["knapsack"] == search["exact_objective"]
    assert s["margin"] == pytest.approx(s["best"] - s["knapsack"]) and s["best"] >= s["knapsack"]  # warm:exact is a trial
    text = render_run_report(out).read_text()
    assert "2,688: train (3 steps per trial, rung at 1), winner from " in text and "against the knapsack pick's" in text


def test_structural_samples_differ_in_structure_and_match_the_budget() -> None:
    from heterosearch.evidence.sampling import sample_structural

    sites = minilm_sites()
    smap = {s.key: s for s in sites}
    allocs = sample_structural(sites, r_max=64, budget=83_000, n=12, seed=0)
    assert len(allocs) == 12
    shapes = {frozenset(a.lora) for a in allocs}
    assert len(shapes) == 12  # twelve different sets of adapted sites
    for a in allocs:
        assert abs(a.params(smap) - 83_000) <= 0.02 * 83_000 and max(a.lora.values()) <= 64
        assert max(a.lora.values()) - min(a.lora.values()) <= 1  # near-uniform on its own sites
    assert sample_structural(sites, 64, 83_000, 12, seed=0) == allocs


@pytest.mark.parametrize("trivial", [True, False])
def test_run_says_so_instead_of_comparing_two_one_class_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               trivial: bool) -> None:
    import heterosearch.train.loop as loop
    from heterosearch.cli import app
    from tests.test_bad_inputs import invoke, run_args
    from tests.tiny_run import make_glue_dir, make_tiny_model

    monkeypatch.setattr(loop, "is_trivial", lambda preds, regression, metrics: trivial)
    tiny = {"model": make_tiny_model(tmp_path / "model"), "data": make_glue_dir(tmp_path / "data", n_train=16, n_dev=8)}
    assert app is not None
    result = invoke(run_args(tiny, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    verify = json.loads((tmp_path / "run" / "verify.json").read_text())
    assert verify["both_trivial"] is trivial
    assert verify["split_roles"]["roles"]["test"].startswith("report only")
    if trivial:
        assert "No comparison" in result.output and "test accuracy" not in result.output
    else:
        assert "No comparison" not in result.output and "test accuracy" in result.output and "val accuracy" in result.output
