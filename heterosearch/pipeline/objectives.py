"""The search stage's objectives beyond the additive proxy: how each is built for a run, and what
search.json records of it (``stage_search`` in ``pipeline/stages.py`` runs them the same way).

- ``lookahead`` (``optimize/lookahead.py``): the drop of validation loss after a few AdamW steps;
- ``train`` (``optimize/train_objective.py``): a short training with the run's recipe, measured on
  the validation split at rungs, pruned by successive halving.

Both are warm-started with the knapsack's pick, the uniform baselines and the proxy's shortlist
(``optimize/warm.py``), so the knapsack's pick competes as the trial ``warm:exact``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DESCRIPTIONS = {
    "proxy": "sum of the chosen options' proxy scores (per-site LoRA ranks, shortcuts, one bank or MoS pool "
             "per role), divided by the best single option's score",
    "lookahead": "lookahead: drop of validation-split loss after a few AdamW steps of the whole allocation "
                 "(optimize/lookahead.py)",
    "train": "train: validation-split value (minus the mean loss, or the main metric) after a short training with the "
             "run's recipe, pruned by successive halving at rungs (optimize/train_objective.py)",
}


def search_setup(run: Any, problem: Any, picks: Sequence[Any], roles: Sequence[str]) -> dict[str, Any]:
    """``run_search`` keyword arguments of the run's objective ({} for the proxy: its baseline enqueue stays)."""
    from heterosearch.optimize.warm import warm_starts

    name = run.cfg.objective
    if name == "proxy":
        return {}
    warm = warm_starts(problem, picks[0].choice, picks, run.sites, roles, run.space.lora.roles, run.space.lora.ranks)
    setup: dict[str, Any] = {"enqueue": None, "warm_starts": warm}
    if name == "lookahead":
        from heterosearch.optimize import lookahead

        cfg = lookahead.run_config(run.cfg)
        setup.update(evaluate=lookahead.for_run(run, cfg), objective_spec=lookahead.spec_for_run(run.cfg, cfg))
    else:
        from heterosearch.optimize import train_objective

        cfg = train_objective.run_config(run.cfg)
        setup.update(evaluate=train_objective.for_run(run, cfg), objective_spec=train_objective.spec_for_run(run.cfg, cfg),
                     pruner=cfg.pruner())
    return setup


def summary_section(name: str, setup: dict[str, Any], result: Any, exact_value: float) -> dict[str, Any]:
    """search.json's ``lookahead`` / ``train`` section: the settings, the cost, and the margin over the knapsack's pick."""
    evaluate = setup["evaluate"]
    out = {
        **setup["objective_spec"]["config"],
        # medians over the allocations this process trained (wall time grows with the machine's load)
        "seconds_per_trial": _median(evaluate.seconds),
        "cpu_seconds_per_trial": _median(evaluate.cpu_seconds),
        "warm_starts": [w for w, _ in setup["warm_starts"]],
        "margin_over_exact": result.best_objective - exact_value,  # winner - knapsack pick, on this objective
    }
    if name == "lookahead":
        out["start_val_loss"] = evaluate.start_loss
    else:
        out["rungs"] = evaluate.cfg.rungs()
        out["pruned_trials"] = result.pruned_trials  # stopped by the pruner (budget repairs are not counted)
        if result.tie_rule is not None:  # --trial-seeds >= 2: the best trial against warm:uniform_all, seed by seed
            out["tie_rule"] = result.tie_rule
    return out


def _median(xs: list[float]) -> float | None:
    return sorted(xs)[len(xs) // 2] if xs else None
