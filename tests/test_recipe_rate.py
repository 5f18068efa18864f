"""The recipe's rate rule: LoRA's learning rate falls once the budget buys uniform LoRA on all sites a rank above 2.

``recipe.lr_factor`` is applied in one place (``RunConfig.train_lr`` via ``RunInputs.train_config``);
these tests check the rule's values, that every training path of a run gets the scaled rate from the
model's own site shapes, that ``--lr-scaling none`` turns it off, and that AdaLoRA keeps its own rate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from heterosearch import recipe
from heterosearch.errors import UserError
from tests.tiny_run import make_glue_dir, make_tiny_model

# The tiny BERT (2 layers, hidden 32, intermediate 64): q, k, v, o cost 32 + 32 per unit of rank,
# the FFN's up and down 32 + 64, so rank 1 on all 12 sites is 2 * (4 * 64 + 2 * 96) = 896 parameters.
RANK_ONE = 896


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rate")
    return make_tiny_model(root / "model"), make_glue_dir(root / "glue")


def test_lr_factor_is_one_up_to_rank_two_then_falls_as_a_power() -> None:
    assert recipe.lr_factor(None, 41_472) == 1.0  # the score stage has no budget
    assert recipe.lr_factor(41_500, 41_472) == 1.0  # MiniLM 41.5k: rank 1 on all 36 sites
    assert recipe.lr_factor(83_000, 41_472) == 1.0  # 83k: rank 2, where the rate was swept
    # 0.5M: uniform LoRA on all sites has rank 12 (500,000 // 41,472); the rate is 1e-3 * (2 / 12) ** p
    assert recipe.lr_factor(500_000, 41_472) == pytest.approx((2 / 12) ** recipe.RATE_EXPONENT)
    assert 0 < recipe.RATE_EXPONENT <= 1
    assert recipe.lr_factor(500_000, 41_472, "none") == 1.0
    assert recipe.lr_factor(10, 41_472) == 1.0  # below rank 1: never above the base rate
    # monotone non-increasing in the budget
    values = [recipe.lr_factor(b, 41_472) for b in range(0, 3_000_000, 10_007)]
    assert all(a >= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize(("budget", "scaling", "factor"), [
    (2 * RANK_ONE, "rank", 1.0),
    (8 * RANK_ONE + 5, "rank", 0.25 ** recipe.RATE_EXPONENT),  # rank 8: (2 / 8) ** p
    (8 * RANK_ONE, "none", 1.0),
])
def test_a_run_trains_at_the_rate_its_budget_rank_gives(tiny_dirs: tuple[Path, Path], tmp_path: Path,
                                                        budget: int, scaling: str, factor: float) -> None:
    from heterosearch.pipeline import RunConfig
    from heterosearch.pipeline.inputs import RunInputs

    model, glue = tiny_dirs
    cfg = RunConfig(budget=budget, model=str(model), data_dir=str(glue), out=str(tmp_path / "run"), lr=2e-3,
                    lr_scaling=scaling)
    run = RunInputs(cfg=cfg)
    assert run.rank_one_params == RANK_ONE == sum(s.d_in + s.d_out for s in run.sites)
    tc = run.train_config(max_steps=3, seed=4)
    assert tc.lr == pytest.approx(2e-3 * factor) and tc.seed == 4
    assert cfg.lr == 2e-3  # config.json keeps the base rate and the rule, not the product


def test_bad_lr_scaling_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from heterosearch.cli import app
    from heterosearch.pipeline import RunConfig

    with pytest.raises(UserError, match="--lr-scaling must be one of rank, none"):
        RunConfig(budget=1000, lr_scaling="sqrt")
    for args in (["run", "--budget", "1k", "--lr-scaling", "sqrt", "--out", str(tmp_path / "never")],
                 ["verify", str(tmp_path), "--lr-scaling", "linear"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "--lr-scaling must be one of rank, none" in result.output + result.stderr
    assert not (tmp_path / "never").exists()


def test_adalora_trains_at_its_own_rate_not_the_scaled_one(tiny_dirs: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """AdaLoRA's rate is the base rate times ADALORA_LR_FACTOR at every budget (its own recipe, swept apart)."""
    from heterosearch.evidence import adalora as adalora_mod
    from heterosearch.evidence import jobs
    from heterosearch.pipeline import RunConfig
    from heterosearch.pipeline.inputs import RunInputs

    model, glue = tiny_dirs
    run = RunInputs(cfg=RunConfig(budget=8 * RANK_ONE, model=str(model), data_dir=str(glue), out=str(tmp_path), lr=2e-3))
    seen: dict[str, float] = {}

    def fake_train(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - records the config it was handed
        seen["lr"] = args[9].lr
        raise RuntimeError("stop here")

    monkeypatch.setattr(adalora_mod, "train_adalora", fake_train)
    cfg = run.train_config(max_steps=3, seed=0)
    assert cfg.lr == pytest.approx(2e-3 * 0.25 ** recipe.RATE_EXPONENT)  # LoRA methods: 2e-3 * (2 / 8) ** p
    with pytest.raises(RuntimeError, match="stop here"):
        jobs.train_verify(run, "adalora", None, 0, {"target_r": 2, "init_r": 3}, cfg, {}, "adalora/0", None)
    assert seen["lr"] == pytest.approx(2e-3 * recipe.ADALORA_LR_FACTOR)


def test_the_flag_help_states_the_exponent_in_use() -> None:
    from typer.testing import CliRunner

    from heterosearch.cli import app

    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    assert f"(2 / r) ** {recipe.RATE_EXPONENT:g}" in " ".join(result.output.split())


@pytest.mark.parametrize(("rank", "resumable"), [(2, True), (8, False)])
def test_a_folder_from_before_the_rule_keeps_its_recipe(tiny_dirs: tuple[Path, Path], tmp_path: Path,
                                                        rank: int, resumable: bool) -> None:
    """config.json without lr_scaling (written before the rule) reopens as "none"; resuming it under the
    rule is allowed only where the rule changes nothing (rank <= 2), else one line names the setting."""
    import json

    from heterosearch.pipeline import RunConfig
    from heterosearch.pipeline.folder import Run, stored_config

    model, glue = tiny_dirs
    out = tmp_path / "old"
    cfg = RunConfig(budget=rank * RANK_ONE, model=str(model), data_dir=str(glue), out=str(out), lr=2e-3)
    Run.open(cfg).save_config()
    doc = json.loads((out / "config.json").read_text())
    assert doc["config"].pop("lr_scaling") == "rank"
    (out / "config.json").write_text(json.dumps(doc))
    reopened = stored_config(out)
    assert reopened.lr_scaling == "none" and reopened.lr == 2e-3
    new = RunConfig(budget=rank * RANK_ONE, model=str(model), data_dir=str(glue), out=str(out), lr=2e-3)
    if resumable:
        assert Run.open(new, resume=True).train_config().lr == pytest.approx(2e-3)
    else:
        with pytest.raises(UserError, match=r"made with other settings \(lr_scaling\)"):
            Run.open(new, resume=True)
