"""The ``train`` objective: short trainings on the validation split, pruned by successive halving.

A tiny saved BERT and a tiny GLUE folder (tests/tiny_run.py), a handful of trials of a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from heterosearch.errors import UserError
from tests.tiny_run import make_glue_dir, make_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread_module")

BUDGET = 2000
STEPS = 6  # train_steps: one rung at 2 steps (run_config: a third of them), the last at 6


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from heterosearch.pipeline import Run, RunConfig, stage_score

    root = tmp_path_factory.mktemp("train_objective")
    model, data = make_tiny_model(root / "model"), make_glue_dir(root / "data", n_train=96, n_dev=8)
    run = Run.open(RunConfig(model=str(model), data_dir=str(data), out=str(root / "run"), score_batches=1,
                              proxies=("spectral",)))
    stage_score(run)
    run.save_config()
    return root / "run"


def search(run_dir: Path, trials: int, **settings: Any) -> tuple[dict[str, Any], Any]:
    """``search RUN --objective train`` through the stage (returns search.json and the evaluated objective's run)."""
    from heterosearch.pipeline import Run, stage_score, stage_search

    run = Run.reopen(run_dir, budget=BUDGET, objective="train", trials=trials, train_steps=STEPS, **settings)
    stage_search(run, stage_score(run))
    run.save_config()
    return json.loads((run_dir / "search.json").read_text()), run


def study_of(run_dir: Path) -> Any:
    import optuna

    from heterosearch.optimize.storage import open_storage

    return optuna.load_study(study_name="heterosearch", storage=open_storage(run_dir / "study.journal"))


def test_train_search_prunes_picks_a_complete_trial_and_resumes(scored: Path) -> None:
    import optuna

    from heterosearch.optimize import train_objective
    from heterosearch.optimize.build import decode

    State = optuna.trial.TrialState
    s, run = search(scored, trials=6)
    study = study_of(scored)
    trials = study.trials
    complete = [t for t in trials if t.state == State.COMPLETE]
    assert len(complete) == s["trials"] == 6
    # The successive-halving pruner stopped some trials at the rung (not the budget, not the trial count).
    by_pruner = [t for t in trials if t.state == State.PRUNED and t.user_attrs.get("pruned_by") == "pruner"]
    assert by_pruner and s["train"]["pruned_trials"] == len(by_pruner)
    for t in by_pruner:
        assert "repaired" not in t.user_attrs and "surplus" not in t.user_attrs
        assert list(t.intermediate_values) == [2] == [t.user_attrs["pruned_at_step"]]
    for t in complete:
        assert list(t.intermediate_values) == [2, STEPS] and t.value == t.intermediate_values[STEPS]
    assert s["train"]["rungs"] == [2] and s["train"]["train_steps"] == STEPS
    # The winner is the best COMPLETE trial, from Optuna's study, within the budget.
    best = max(complete, key=lambda t: (t.value, -t.number))
    assert s["winner_trial"] == best.number == s["optuna_best_trial"]
    assert s["winner_source"] == ("optuna" if best.user_attrs["source"].startswith("sampler") else best.user_attrs["source"])
    assert s["winner"] == decode(best.params, run.space, run.sites).to_dict()
    assert s["best_params"] == best.user_attrs["params"] <= BUDGET
    assert all(h["params"] <= BUDGET for h in s["history"])
    # The knapsack's pick is the trial warm:exact; the margin over it is recorded on the validation objective.
    exact = next(t for t in trials if t.user_attrs.get("source") == "warm:exact")
    assert exact.state == State.COMPLETE and s["exact_objective"] == exact.value
    assert s["train"]["margin_over_exact"] == pytest.approx(best.value - exact.value) and best.value >= exact.value
    # Each trial's params are what was trained: a fresh objective (as a worker rebuilds it from the study)
    # trains the params of the winner and of a pruned trial to the same values, bit for bit.
    fresh = train_objective.from_spec(study.user_attrs["heterosearch.objective"])
    assert fresh.cfg.train_steps == STEPS
    assert fresh(best.params) == best.value
    pruned = by_pruner[0]
    fresh(pruned.params)  # no trial: trained to the end, unpruned
    allocation, values = fresh.trained[-1]
    assert allocation == decode(pruned.params, run.space, run.sites).to_dict() and values[2] == pruned.intermediate_values[2]
    # Re-running resumes: the same trial count trains nothing new, a larger one appends to the same study.
    before = [(t.number, t.state, t.params, t.value) for t in trials]
    assert s["train"]["seconds_per_trial"] > 0 and s["train"]["cpu_seconds_per_trial"] > 0
    again, _ = search(scored, trials=6)
    assert [(t.number, t.state, t.params, t.value) for t in study_of(scored).trials] == before
    # the rerun trained nothing: search.json keeps the per-trial times of the invocation that trained
    assert {k: again["train"][k] for k in ("seconds_per_trial", "cpu_seconds_per_trial")} == \
        {k: s["train"][k] for k in ("seconds_per_trial", "cpu_seconds_per_trial")}
    s2, _ = search(scored, trials=7)
    after = study_of(scored).trials
    assert [(t.number, t.state, t.params, t.value) for t in after[: len(before)]] == before
    assert s2["trials"] == 7 and len(after) > len(before)
    # A worker joins the same study: it rebuilds the objective and sets the successive-halving pruner
    # (which marks every trial it examines at a rung; Optuna's default MedianPruner would not).
    from heterosearch.optimize.worker import run_worker

    joined = run_worker(scored / "study.journal", n_trials=8, seed=1)
    new = study_of(scored).trials[len(after):]
    assert joined.complete == 8 and new
    assert all("completed_rung_0" in t.system_attrs and 2 in t.intermediate_values for t in new
               if "repaired" not in t.user_attrs)


def test_rung_steps_zero_trains_every_trial_to_the_end(scored: Path, tmp_path: Path) -> None:
    # --rung-steps 0: no pruner, so the warm starts (knapsack pick, uniform q,v, uniform all sites, shortlist)
    # are finalists trained with the whole schedule, picked on the validation value.
    import shutil

    import optuna

    State = optuna.trial.TrialState
    run_dir = tmp_path / "run"
    shutil.copytree(scored, run_dir)  # the scores; a study of another objective spec is replaced
    s, _ = search(run_dir, trials=4, rung_steps=0)
    everything = study_of(run_dir).trials
    trials = [t for t in everything if t.state == State.COMPLETE]
    # nothing pruned; the warm starts beyond --trials stay enqueued (WAITING) for a resume with more trials
    assert len(trials) == 4 and all(t.state == State.WAITING for t in everything if t.state != State.COMPLETE)
    assert all(list(t.intermediate_values) == [STEPS] for t in trials)  # reported once, at the last step
    assert s["train"]["rungs"] == [] and s["train"]["rung_steps"] == 0 and s["train"]["pruned_trials"] == 0
    assert s["train"]["val_examples"] == 0  # the whole validation split
    sources = [t.user_attrs["source"] for t in trials]
    assert sources[:3] == ["warm:exact", "warm:uniform_qv", "warm:uniform_all"] == [f"warm:{w}" for w in s["train"]["warm_starts"][:3]]
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert s["winner_trial"] == best.number and s["best_objective"] == best.value
    assert best.value >= max(t.value for t in trials if t.user_attrs["source"] == "warm:uniform_all")
    assert json.loads((run_dir / "config.json").read_text())["config"]["rung_steps"] == 0


def test_trial_seeds_average_seeds_and_the_winner_must_beat_uniform_all_seed_by_seed(scored: Path, tmp_path: Path) -> None:
    # --trial-seeds 2: every finalist trains at seeds 0 and 1; its value is the mean, and the winner is the best mean
    # only if it beats the warm:uniform_all trial by more than the seed noise (optimize/study.py tie_rule)
    import shutil

    import optuna

    from heterosearch.optimize.tie_rule import lower_bound

    run_dir = tmp_path / "run"
    shutil.copytree(scored, run_dir)
    s, _ = search(run_dir, trials=4, rung_steps=0, trial_seeds=2)
    study = study_of(run_dir)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 4 and s["train"]["seeds"] == 2
    for t in trials:
        per_seed = t.user_attrs["seed_values"]
        assert set(per_seed) == {"0", "1"} and t.value == pytest.approx((per_seed["0"] + per_seed["1"]) / 2)
        assert list(t.intermediate_values) == [STEPS] and t.intermediate_values[STEPS] == pytest.approx(t.value)
    assert any(t.user_attrs["seed_values"]["0"] != t.user_attrs["seed_values"]["1"] for t in trials)  # seeds differ
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert s["optuna_best_trial"] == best.number == study.best_trial.number  # what optuna-dashboard shows as best
    ref = next(t for t in trials if t.user_attrs["source"] == "warm:uniform_all")
    if best.number == ref.number:
        assert "tie_rule" not in s["train"] and s["winner_trial"] == ref.number
    else:
        tie = s["train"]["tie_rule"]
        gains = [best.user_attrs["seed_values"][k] - ref.user_attrs["seed_values"][k] for k in ("0", "1")]
        assert tie["best_trial"] == best.number and tie["reference_trial"] == ref.number
        assert tie["gains"] == pytest.approx(gains) and tie["lower_bound"] == pytest.approx(lower_bound(gains))
        assert s["winner_trial"] == (ref.number if tie["lower_bound"] <= 0 else best.number)
        assert tie["kept_reference"] == (tie["lower_bound"] <= 0)
        assert study.user_attrs["heterosearch.winner_trial"] == s["winner_trial"]
    assert json.loads((run_dir / "config.json").read_text())["config"]["trial_seeds"] == 2
    from heterosearch.evidence.frontier_summary import search_point
    from heterosearch.report.render import _search_line

    point = search_point(run_dir)  # what a frontier report says of this search
    assert point["trial_seeds"] == 2 and point["tie_rule"] == s["train"].get("tie_rule")
    line = _search_line(str(BUDGET), point)
    assert f"({STEPS} steps per trial, 2 seeds, no pruning)" in line
    assert ("tie rule: trial" in line) == (point["tie_rule"] is not None)
    tie = {"best_trial": 3, "mean_gain": 0.01, "lower_bound": -0.02, "kept_reference": True}
    assert "tie rule: trial 3 against uniform_all, gain +0.0100 (bound -0.0200): uniform_all kept" in \
        _search_line(str(BUDGET), {**point, "tie_rule": tie})


class FakeTrial:
    def __init__(self, number: int, source: str = "sampler", seed_values: dict[str, float] | None = None,
                 prune_at: int | None = None) -> None:
        self.number, self.user_attrs, self.prune_at = number, {"source": source}, prune_at
        if seed_values is not None:
            self.user_attrs["seed_values"] = seed_values
        self.reports: list[tuple[int, float]] = []

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def should_prune(self) -> bool:
        return self.reports[-1][0] == self.prune_at


def test_tie_rule_switches_only_above_the_noise() -> None:
    from heterosearch.optimize.tie_rule import tie_rule

    ref = FakeTrial(2, "warm:uniform_all", {"0": -0.50, "1": -0.52, "2": -0.51})
    clear = FakeTrial(5, seed_values={"0": -0.45, "1": -0.46, "2": -0.44})  # gains 0.05-0.07 on every seed
    noisy = FakeTrial(6, seed_values={"0": -0.40, "1": -0.60, "2": -0.45})  # best mean (-0.483), one seed loses
    won, ev = tie_rule(clear, [ref, clear, noisy])
    assert won is clear and ev["kept_reference"] is False and ev["lower_bound"] > 0
    assert ev["gains"] == pytest.approx([0.05, 0.06, 0.07]) and ev["seeds"] == [0, 1, 2]
    won, ev = tie_rule(noisy, [ref, clear, noisy])
    assert won is ref and ev["kept_reference"] is True and ev["mean_gain"] == pytest.approx(0.0267, abs=1e-4)
    assert tie_rule(ref, [ref, clear]) == (ref, None)  # the reference itself won
    one_seed = FakeTrial(7, seed_values={"0": -0.1})
    assert tie_rule(one_seed, [ref, one_seed]) == (one_seed, None)  # one seed: no noise estimate, no rule
    assert tie_rule(clear, [clear, noisy]) == (clear, None)  # no uniform_all trial


def test_several_seeds_per_trial_report_the_first_seed_at_rungs_and_the_mean_at_the_end() -> None:
    import optuna

    from heterosearch.optimize.train_objective import TrainObjective, TrainObjectiveConfig

    trained: list[int] = []

    def train(allocation: Any, on_step: Any, seed: int) -> None:
        trained.append(seed)
        for step in range(1, 7):
            on_step(step, {"seed": seed, "step": step})

    class Model(dict):
        def train(self) -> None:
            pass

    def validate(model: Any) -> float:
        return -1.0 + 0.01 * model["step"] + 0.1 * model["seed"]

    class Alloc:
        def to_dict(self) -> dict[str, Any]:
            return {"lora": {"L0.q": 1}}

    cfg = TrainObjectiveConfig(train_steps=6, rung_steps=2, seeds=3, seed=4)
    objective = TrainObjective(lambda a, cb, seed: train(a, lambda d, m: cb(d, Model(m)), seed), validate,
                               lambda choice: Alloc(), cfg)
    trial = FakeTrial(0)
    value = objective({}, trial)
    assert trained == [4, 5, 6] and value == pytest.approx(-0.94 + 0.5)  # mean of seeds 4, 5, 6 at step 6
    assert trial.reports == [(2, pytest.approx(-0.98 + 0.4)), (6, pytest.approx(value))]  # the first seed's rung, the mean
    assert trial.user_attrs["seed_values"] == {"4": pytest.approx(-0.54), "5": pytest.approx(-0.44), "6": pytest.approx(-0.34)}
    pruned = FakeTrial(1, prune_at=2)
    trained.clear()
    objective._cache.clear()
    with pytest.raises(optuna.TrialPruned):
        objective({}, pruned)
    assert trained == [4]  # pruned on the first seed's rung: the other seeds never train
    assert "seeds" not in TrainObjectiveConfig().to_dict() and TrainObjectiveConfig(seeds=2).to_dict()["seeds"] == 2


def test_train_objective_settings_are_checked() -> None:
    from heterosearch.optimize.train_objective import TrainObjectiveConfig

    assert TrainObjectiveConfig().rungs() == [6]
    assert TrainObjectiveConfig(train_steps=100, rung_steps=4, reduction_factor=3).rungs() == [4, 12, 36]
    for bad in ({"train_steps": 0}, {"rung_steps": 30}, {"reduction_factor": 1}, {"metric": "accuracy"}):
        with pytest.raises(UserError):
            TrainObjectiveConfig(**bad)


def test_train_steps_give_one_rung_at_a_third() -> None:
    # --train-steps N: one pruning rung at ceil(N / 3) (the default 18 keeps its rung at 6)
    from heterosearch.optimize.train_objective import config_for_steps

    assert config_for_steps(None, 0).rungs() == [6] and config_for_steps(18, 0).rungs() == [6]
    assert config_for_steps(120, 0).rungs() == [40]
    assert config_for_steps(100, 3).rungs() == [34] and config_for_steps(100, 3).seed == 3
    assert config_for_steps(2, 0).rungs() == [1]
    # --rung-steps: an explicit rung (later ones at x3 below the last step), or 0 = no rung and no pruner
    assert config_for_steps(486, 0, 54).rungs() == [54, 162]
    none = config_for_steps(486, 0, 0)
    assert none.rungs() == [] and type(none.pruner()).__name__ == "NopPruner"
    # a finalist is evaluated once: on the whole validation split unless asked otherwise
    assert none.val_examples == 0 and config_for_steps(486, 0).val_examples == 128
    assert config_for_steps(486, 0, 0, 64).val_examples == 64 and config_for_steps(486, 0, 54, 0).val_examples == 0
    assert config_for_steps(None, 0, 0).train_steps == 18


def test_bad_train_steps_is_a_user_error() -> None:
    from heterosearch.pipeline import RunConfig

    with pytest.raises(UserError, match="train_steps"):
        RunConfig(objective="train", train_steps=0)
    for steps, rung in ((None, 19), (6, 7), (6, -1)):
        with pytest.raises(UserError, match="--rung-steps"):
            RunConfig(objective="train", train_steps=steps, rung_steps=rung)
    with pytest.raises(UserError, match="--val-examples"):
        RunConfig(objective="train", val_examples=-1)
    for bad in ({"objective": "train", "trial_seeds": 0}, {"objective": "proxy", "trial_seeds": 2}):
        with pytest.raises(UserError, match="--trial-seeds"):
            RunConfig(**bad)


def test_api_train_objective_searches_within_budget(tiny_bert: Any) -> None:
    import heterosearch
    from tests.tiny_models import tiny_batch

    batches = [tiny_batch(n=8, seed=i) for i in range(4)]
    with pytest.raises(UserError, match="train_steps"):
        heterosearch.search(tiny_bert(), batches, budget=600, objective="train", score_batches=2, train_steps=0)
    result = heterosearch.search(tiny_bert(), batches, budget=600, objective="train", score_batches=2, trials=4,
                                 train_steps=3)
    assert result.objective_name == "train" and result.params <= 600
    assert result.objective < 0  # minus a mean validation loss
    assert result.winner_source == "optuna" or result.winner_source.startswith("warm:")
    two = heterosearch.search(tiny_bert(), batches, budget=600, objective="train", score_batches=2, trials=3,
                              train_steps=2, rung_steps=0, trial_seeds=2)
    assert two.params <= 600 and two.objective < 0
    with pytest.raises(UserError, match="trial seeds"):
        heterosearch.search(tiny_bert(), batches, budget=600, objective="train", score_batches=2, trial_seeds=0)


def test_run_command_with_train_objective(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from heterosearch.cli import app

    model, data = make_tiny_model(tmp_path / "model"), make_glue_dir(tmp_path / "data", n_train=64, n_dev=8)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--budget", "2k", "--model", str(model), "--data-dir", str(data),
                                      "--out", str(out), "--objective", "train", "--trials", "3",
                                      "--score-batches", "1", "--max-train-steps", "2"], env={"HETEROSEARCH_QUIET": "1"})
    assert result.exit_code == 0, (result.output, result.stderr)
    s = json.loads((out / "search.json").read_text())
    assert s["objective_name"] == "train" and s["trials"] == 3 and s["train"]["train_steps"] == 18
    assert s["train"]["warm_starts"][0] == "exact" and s["winner_trial"] is not None
    assert "over the knapsack pick's" in (out / "report.md").read_text()
    # a rung after the last step is one line and exit code 2, before any work
    bad = CliRunner().invoke(app, ["run", "--budget", "2k", "--model", str(model), "--data-dir", str(data),
                                   "--out", str(tmp_path / "bad"), "--objective", "train", "--train-steps", "6",
                                   "--rung-steps", "7"], env={"HETEROSEARCH_QUIET": "1"})
    assert bad.exit_code == 2 and "--rung-steps must be in [0, 6]" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()
    for extra, says in ((["--objective", "proxy", "--trial-seeds", "2"], "--trial-seeds applies to --objective train"),
                        (["--objective", "train", "--trial-seeds", "0"], "--trial-seeds must be in [1, 100]")):
        bad = CliRunner().invoke(app, ["run", "--budget", "2k", "--model", str(model), "--data-dir", str(data),
                                       "--out", str(tmp_path / "bad"), *extra], env={"HETEROSEARCH_QUIET": "1"})
        assert bad.exit_code == 2 and says in bad.output and "Traceback" not in bad.output
        assert not (tmp_path / "bad").exists()
