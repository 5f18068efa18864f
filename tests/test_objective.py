"""The search objectives: the proxy's frontier and shortlist, the lookahead objective, and trials
whose params are the evaluated (repaired, within-budget) allocation. Tiny models, one thread."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from heterosearch.cli import app
from heterosearch.optimize.objective import PARAM_PREFIX, lora_part
from heterosearch.optimize.problem import Group, Problem, RoleBlock
from heterosearch.optimize.shortlist import active_decisions, shortlist
from heterosearch.optimize.study import run_search
from heterosearch.optimize.warm import warm_starts
from tests.tiny_models import tiny_batch, tiny_model
from tests.tiny_run import make_glue_dir, make_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread_module")


def random_problem(seed: int, n_groups: int = 4, n_options: int = 3, budget: int = 40) -> Problem:
    rng = np.random.default_rng(seed)
    values = rng.random((n_groups, n_options))
    values[:, 0] = 0.0
    costs = rng.integers(1, 15, size=(n_groups, n_options))
    costs[:, 0] = 0
    return Problem.from_arrays([f"s{i}" for i in range(n_groups)], list(range(n_options)), values, costs, budget)


def brute_force(problem: Problem, budget: int) -> float:
    best = 0.0
    for combo in itertools.product(*[g.labels for g in problem.groups]):
        value, cost = problem.evaluate({g.key: c for g, c in zip(problem.groups, combo, strict=True)})
        if cost <= budget:
            best = max(best, value)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frontier_equals_brute_force_at_every_budget(seed: int) -> None:
    problem = random_problem(seed)
    exact = problem.solve()
    assert exact.exact and exact.unit == 1
    steps = dict(exact.frontier)
    for b in range(problem.budget + 1):
        truth = brute_force(problem, b)
        on_frontier = max(v for k, v in steps.items() if k <= b)  # the step function holds until the next rise
        assert on_frontier == pytest.approx(truth)
        value, cost = problem.evaluate(exact.choice_at(b))  # the optimum at b, backtracked from the same DP
        assert cost <= b and value == pytest.approx(truth)
    assert exact.frontier[-1][1] == pytest.approx(exact.value)


def role_problem() -> Problem:
    """Two LoRA groups, a role with two v sites or a bank: modes make "distinct" non-trivial."""
    free = [Group("rank.L0.q", [0, 1, 2], [0.0, 0.4, 0.6], [0, 10, 20]),
            Group("rank.L1.q", [0, 1, 2], [0.0, 0.3, 0.55], [0, 10, 20])]
    v_sites = [Group("rank.L0.v", [0, 1, 2], [0.0, 0.5, 0.7], [0, 10, 20]),
               Group("rank.L1.v", [0, 1, 2], [0.0, 0.45, 0.65], [0, 10, 20])]
    bank = Group("bank.v", ["off", "A2", "A4"], [0.0, 0.9, 1.0], [0, 12, 24])
    return Problem(budget=50, groups=free, roles=[RoleBlock("v", v_sites, {"bank": bank})])


@pytest.mark.parametrize("problem", [random_problem(3, n_groups=6, n_options=4, budget=50), role_problem()])
def test_shortlist_is_distinct_near_optimal_and_within_budget(problem: Problem) -> None:
    exact = problem.solve()
    picks = shortlist(problem, k=4)
    assert len(picks) >= 3
    assert picks[0].choice == exact.choice and picks[0].ratio == 1.0 and picks[0].distance == 0
    decisions = [active_decisions(problem, p.choice) for p in picks]
    assert all(a != b for a, b in itertools.combinations(decisions, 2))
    for p in picks:
        value, cost = problem.evaluate(p.choice)
        assert (p.value, p.cost) == (pytest.approx(value), cost)
        assert cost <= problem.budget
        assert 0.5 < p.ratio <= 1.0 + 1e-12  # near-optimal (the penalty bounds the loss)
    assert all(p.distance >= 1 for p in picks[1:])


# -- lookahead on a tiny BERT ---------------------------------------------------------------------


def tiny_lookahead(seed: int = 0) -> tuple[Problem, Any, list[Any]]:
    from heterosearch.models import discover_sites
    from heterosearch.optimize.lookahead import Lookahead, LookaheadConfig
    from heterosearch.space.allocation import Allocation
    from heterosearch.space.budget import lora_params

    model = tiny_model("bert", seed=0)
    sites = [s for s in discover_sites(model) if s.role in ("q", "v", "ffn_in")]
    ranks = [0, 1, 2, 4]
    rng = np.random.default_rng(0)
    values = rng.random((len(sites), len(ranks))).cumsum(axis=1)
    values[:, 0] = 0.0
    costs = [[lora_params(s.d_in, s.d_out, r) for r in ranks] for s in sites]
    per_rank1 = sum(c[1] for c in costs)
    problem = Problem.from_arrays([s.key for s in sites], ranks, values, costs, budget=2 * per_rank1)
    cfg = LookaheadConfig(steps=3, fit_batches=2, val_batches=2, lr=1e-2, seed=seed)
    fit = [tiny_batch(n=8, seed=i) for i in range(2)]
    val = [tiny_batch(n=8, seed=10 + i) for i in range(2)]
    evaluate = Lookahead(model, discover_sites(model), 2.0, lambda c: Allocation(lora=lora_part(c)), fit, val, cfg)
    return problem, evaluate, sites


def lookahead_search(journal: Path, seed: int, trials: int = 14) -> tuple[Any, Any, Problem, Any]:
    import optuna

    from heterosearch.optimize.storage import open_storage

    problem, evaluate, sites = tiny_lookahead()
    exact = problem.solve()
    warm = warm_starts(problem, exact.choice, shortlist(problem, k=3, exact=exact), sites, ("q", "v"),
                       ("q", "v", "ffn_in"), [0, 1, 2, 4])
    spec = {"name": "lookahead", "config": evaluate.cfg.to_dict()}
    result = run_search(problem, trials, seed, journal, warm_starts=warm, evaluate=evaluate, objective_spec=spec)
    study = optuna.load_study(study_name="heterosearch", storage=open_storage(journal))
    return result, study, problem, (warm, evaluate)


def test_lookahead_search_scores_what_its_params_say(tmp_path: Path) -> None:
    import optuna

    from heterosearch.optimize.lookahead import Lookahead

    result, study, problem, (warm, evaluate) = lookahead_search(tmp_path / "s.journal", seed=0)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == result.trials == 14
    # Warm starts first, in order, with their names; the exact proxy optimum is trial 0's point.
    names = [name for name, _ in warm]
    assert names[:3] == ["exact", "uniform_qv", "uniform_all"] and len(names) >= 4
    for (name, choice), t in zip(warm, complete, strict=False):
        assert t.user_attrs["source"] == f"warm:{name}"
        assert t.params == {k: choice[k] for k in t.params}
    assert result.exact_trial_value == pytest.approx(complete[0].value)
    # Every complete trial's params are the allocation it evaluated: within budget, value reproducible.
    fresh = Lookahead(evaluate.base, evaluate.sites, 2.0, evaluate.to_allocation, evaluate.fit, evaluate.val, evaluate.cfg)
    for t in complete:
        cost = problem.evaluate(t.params)[1]
        assert t.user_attrs["params"] == cost <= problem.budget
        assert t.value == fresh(t.params)  # deterministic: a fresh objective gives the same number, bit for bit
        assert t.user_attrs["proxy_objective"] == pytest.approx(problem.evaluate(t.params)[0])
    assert study.best_params == study.best_trial.params == result.best_choice
    assert problem.evaluate(study.best_params)[1] <= problem.budget
    assert result.best_objective == max(t.value for t in complete) == study.best_value
    # The budget bites: some sampled points were over it; each was pruned and its repair evaluated as a trial.
    over = [t for t in study.trials if t.user_attrs.get("repaired")]
    assert over and all(t.state == optuna.trial.TrialState.PRUNED for t in over)
    repairs = {t.user_attrs["repaired_from"]: t for t in study.trials if "repaired_from" in t.user_attrs}
    for t in over:
        assert problem.evaluate(t.params)[1] > problem.budget
        assert repairs[t.number].params == problem.repair(t.params)
    # Not additive: the lookahead ranks allocations differently from the proxy sum somewhere.
    by_proxy = sorted(complete, key=lambda t: t.user_attrs["proxy_objective"])
    assert [t.number for t in by_proxy] != [t.number for t in sorted(complete, key=lambda t: t.value)]


def test_lookahead_search_is_deterministic_with_a_seed(tmp_path: Path) -> None:
    first, *_ = lookahead_search(tmp_path / "a.journal", seed=3, trials=10)
    second, *_ = lookahead_search(tmp_path / "b.journal", seed=3, trials=10)
    assert first.history == second.history
    assert (first.best_choice, first.best_objective, first.best_source) == (
        second.best_choice, second.best_objective, second.best_source)


def test_lookahead_starts_from_a_non_degenerate_state() -> None:
    """At init (B = 0) every allocation is the base model; after the steps allocations differ."""
    problem, evaluate, sites = tiny_lookahead()
    small = problem.baseline_choice({PARAM_PREFIX + sites[0].key: 1})
    large = problem.baseline_choice({PARAM_PREFIX + s.key: 4 for s in sites[:4]})
    nothing = problem.baseline_choice({})
    values = {evaluate(small), evaluate(large), evaluate(nothing)}
    assert len(values) == 3  # three allocations, three different values (only the head trains for "nothing")


# -- the command line and the API -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("objective")
    return {"model": make_tiny_model(root / "model"), "data": make_glue_dir(root / "data", n_train=48, n_dev=8)}


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, env={"HETEROSEARCH_QUIET": "1"})


@pytest.mark.parametrize("command", ["run", "search"])
def test_bad_objective_is_one_line_exit_2(tiny: dict[str, Path], tmp_path: Path, command: str) -> None:
    if command == "run":
        args = ["run", "--budget", "2k", "--model", str(tiny["model"]), "--data-dir", str(tiny["data"]),
                "--out", str(tmp_path / "out"), "--objective", "lookahaed"]
    else:
        out = tmp_path / "scored"
        assert invoke(["score", "--model", str(tiny["model"]), "--data-dir", str(tiny["data"]), "--out", str(out),
                       "--score-batches", "1"]).exit_code == 0
        args = ["search", str(out), "--budget", "2k", "--objective", "train-hard"]
    result = invoke(args)
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    assert result.exit_code == 2 and "Traceback" not in result.output + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unknown objective" in lines[0], lines
    assert "available: lookahead, proxy, train" in lines[0]
    if command == "run":
        assert "did you mean 'lookahead'" in lines[0]
        assert not (tmp_path / "out").exists()
    else:
        assert not (out / "search.json").exists()


def test_search_command_with_lookahead_records_the_winner(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke(["score", "--model", str(tiny["model"]), "--data-dir", str(tiny["data"]), "--out", str(out),
                   "--score-batches", "1"]).exit_code == 0
    result = invoke(["search", str(out), "--budget", "2k", "--objective", "lookahead", "--trials", "8"])
    assert result.exit_code == 0, (result.output, result.stderr)
    s = json.loads((out / "search.json").read_text())
    assert s["objective_name"] == "lookahead" and s["trials"] == 8
    assert s["lookahead"]["warm_starts"][0] == "exact"
    best = max((h for h in s["history"]), key=lambda h: h["value"])
    assert s["winner_trial"] == best["number"]
    assert s["winner_source"] == ("optuna" if best["source"].startswith("sampler") else best["source"])
    assert s["lookahead"]["margin_over_exact"] == pytest.approx(best["value"] - s["exact_objective"])
    assert s["lookahead"]["margin_over_exact"] >= 0  # the exact pick is one of the trials
    assert all(h["params"] <= 2000 for h in s["history"])
    assert len(s["shortlist"]) >= 2 and s["shortlist"][0]["ratio"] == 1.0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["objective"] == "lookahead"


def test_api_lookahead_needs_held_out_batches_and_runs(tiny_bert: Any) -> None:
    import heterosearch
    from heterosearch.errors import UserError

    model = tiny_bert()
    batches = [tiny_batch(n=8, seed=i) for i in range(6)]
    with pytest.raises(UserError, match="unknown objective"):
        heterosearch.search(model, batches, budget=600, objective="train-hard")
    with pytest.raises(UserError, match="hold some out"):
        heterosearch.search(model, batches[:2], budget=600, objective="lookahead", score_batches=2)
    result = heterosearch.search(model, batches, budget=600, objective="lookahead", score_batches=2, trials=6)
    assert result.objective_name == "lookahead" and result.params <= 600
    assert result.winner_source in ("optuna",) or result.winner_source.startswith("warm:")
