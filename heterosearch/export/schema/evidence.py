"""The schemas of the evidence files: verify_seeds.json, rank_report.json and frontier.json."""

from __future__ import annotations

from heterosearch.export.schema.files import (
    ALLOCATION,
    COUNT,
    METRICS,
    SECONDS,
    SPLIT_METRICS,
    FileSchema,
    _adalora_runs,
    _ci_pairs,
    _rank_report_complete,
    _summary_has_metric,
)
from heterosearch.export.schema.specs import (
    AnyValue,
    Bool,
    Int,
    ListOf,
    MapOf,
    Num,
    Obj,
    Opt,
    Str,
)

_STAT = Obj({"n": COUNT, "mean": Opt(Num()), "std": Opt(Num()), "values": MapOf(Num(), key_what="a seed")},
            {"min": Opt(Num()), "max": Opt(Num())}, what="a per-method statistic (n, mean, std, values)")
_PAIRED = Obj(
    {"n": COUNT, "mean_diff": Num(), "wins": COUNT, "losses": COUNT, "ties": COUNT,
     "t_test_p": Opt(Num()), "wilcoxon_p": Opt(Num())},
    {"std_diff": Opt(Num()), "diffs": ListOf(Num()), "ci95": Opt(ListOf(Num(), 2, 2)), "seeds_for_1pt": Opt(COUNT),
     "test": Str(), "seeds": ListOf(AnyValue())},
    what="a paired comparison",
)
_SEED_RUN = Obj(
    {"method": Str(), "seed": Int(), "params": COUNT, "splits": SPLIT_METRICS},
    {
        "name": Str(),
        "allocation": Opt(ALLOCATION),
        "planned_params": Opt(COUNT),
        "gap": Opt(Num()),
        "head_params": Opt(COUNT),
        "steps": COUNT,
        "seconds": Opt(SECONDS),
        "train_loss": Opt(Num(finite=False)),
        "tokens_per_second": Opt(Num(finite=False)),
        "trivial": Opt(MapOf(Bool())),
        "params_allocated": COUNT,
        "params_lora_equivalent": COUNT,
        "adalora_schedule": Opt(MapOf(AnyValue())),
    },
    what="a trained (method, seed) record",
)
# evidence/selection.py: the validated pick (winner or uniform_all) and the evidence it was made on
_SELECTION = Obj(
    {"selected": Str(), "reference": Str(), "candidate": Str(), "metric": Str(),
     "val": Obj({"seeds": ListOf(AnyValue()), "gains": ListOf(Num()), "mean_gain": Num(), "lower_bound": Opt(Num())},
                what="the validation evidence")},
    {"rule": Str(), "why": Str(),
     "test": Obj({"diffs": ListOf(Num()), "mean_diff": Num()},
                 {"seeds": ListOf(AnyValue()), "ci95": Opt(ListOf(Num(), 2, 2)), "mean": Num()}, what="the pick's test values")},
    what="a validated pick",
)
VERIFY_SEEDS = FileSchema(
    title="multi-seed verification",
    spec=Obj(
        {"metric": Str(), "budget": COUNT, "winner_params": COUNT},
        {
            "format_version": COUNT,
            "task": Str(),
            "seeds": ListOf(Int()),
            "methods_order": ListOf(Str(), min_len=1),
            "methods": MapOf(Obj(optional={"per_seed": MapOf(AnyValue())}, what="a method's plan")),
            "unavailable": MapOf(AnyValue()),
            "train_config": MapOf(AnyValue()),
            "runs": MapOf(_SEED_RUN, key_what="'method/seed'"),
            "timings": MapOf(Num(), what="an object of name -> seconds"),
            "summary": MapOf(MapOf(Obj({"methods": MapOf(_STAT), "paired": MapOf(_PAIRED)}, what="a metric's summary"),
                                   key_what="a metric name"), key_what="a split name"),
            "selection": Opt(_SELECTION),
        },
    ),
    writer="heterosearch verify RUN",
    fix="rerun `heterosearch verify RUN --overwrite` to rewrite it",
    format_version=1,
    invariants=(_summary_has_metric, _adalora_runs),
)

_CI = Obj({"value": Opt(Num())}, {"low": Opt(Num()), "high": Opt(Num()), "method": Str()},
          what="a statistic with its interval")
_RSTATS = Obj({"spearman": _CI, "kendall": _CI, "top_k_precision": _CI}, {"sign": Str(), "n": COUNT, "k": COUNT},
              what="ranking statistics (spearman, kendall, top_k_precision)")
_RELIABILITY = Obj({"reliability": Num(), "max_correlation": Num(), "sd_of_seed_means": Num(), "seed_sd": Num(),
                    "seeds": COUNT},
                   what="a reliability record")
_RANKING = {
    "k": COUNT,
    "reliability": _RELIABILITY,
    "proxies": MapOf(_RSTATS),
    "noise_ceiling": _RSTATS,
    "baselines": Obj({"params": _RSTATS, "random": _RSTATS},
                     {"random_expected": Obj(optional={"spearman": Num(), "kendall": Num(),
                                                       "top_k_precision": Num()})}),
}
# The same statistics against the loss: the report prints its table whenever the section is there.
_LOSS_RANKING = Obj({k: _RANKING[k] for k in ("proxies", "noise_ceiling", "baselines")},
                    {k: _RANKING[k] for k in ("k", "reliability")}, what="ranking statistics against the loss")
_RANK_RUN = Obj({"metrics": METRICS, "seconds": SECONDS},
                {"eval_loss": Opt(Num()), "steps": COUNT, "train_loss": Opt(Num(finite=False))},
                what="a training record")
_TARGETS = {"acc": MapOf(Num(), key_what="a seed"), "mean": Num(), "neg_loss": MapOf(Num(), key_what="a seed"),
            "neg_loss_mean": Num()}
RANK_REPORT = FileSchema(
    title="rank report",
    spec=Obj(
        {
            "status": Str(),
            "task": AnyValue(),
            "budget": COUNT,
            "tolerance": Num(),
            "steps": AnyValue(),
            "seeds": ListOf(Int(), 2, 2, what="the two training seeds (a list of 2 whole numbers)"),
            "metric": Str(),
            "candidates": ListOf(Obj({"allocation": ALLOCATION, "params": COUNT, "scores": MapOf(Num()),
                                      "runs": MapOf(_RANK_RUN, key_what="a seed")},
                                     _TARGETS, what="a sampled allocation")),
        },
        {
            "format_version": COUNT,
            "proxies_scored": ListOf(Str()),
            **_RANKING,
            "by_val_loss": Opt(_LOSS_RANKING),
            "by_dev_loss": Opt(_LOSS_RANKING),
            "uniform": Opt(Obj({"name": Str(), "allocation": ALLOCATION, "params": COUNT,
                                "runs": MapOf(_RANK_RUN, key_what="a seed")},
                               {**_TARGETS, "scores": MapOf(Num()), "fraction_of_samples_above": Num()},
                               what="the uniform baseline")),
            "train_config": MapOf(AnyValue()),
            "timings": MapOf(Num(), what="an object of name -> seconds"),
        },
    ),
    writer="heterosearch rank-report",
    fix="delete it and rerun `heterosearch rank-report` with the same settings (its trainings are redone)",
    format_version=1,
    invariants=(_rank_report_complete, _ci_pairs),
)

_BUDGET = r"[0-9]{1,18}"
_SPLIT_STAT = Obj(optional={"mean": Opt(Num()), "std": Opt(Num()), "n": COUNT, "values": MapOf(Num())},
                  what="a split's statistic")
FRONTIER = FileSchema(
    title="frontier",
    spec=Obj(
        {"task": AnyValue(), "space": AnyValue(), "proxy": AnyValue()},
        {
            "format_version": COUNT,
            "model": Opt(Str()),
            "objective": Opt(Str()),
            "reuse_from": Opt(Str()),
            "seed": COUNT,
            "budgets": ListOf(COUNT),
            "seeds": MapOf(AnyValue(), key=_BUDGET, key_what="a budget"),
            "methods": ListOf(Str()),
            "metric": Opt(Str()),
            "status": Str(),
            "points": MapOf(
                MapOf(Obj({"name": AnyValue(), "params": Obj({"min": COUNT, "max": COUNT, "mean": Num(lo=0)})},
                          {"trivial_test": COUNT, "n": COUNT, "val": _SPLIT_STAT, "test": _SPLIT_STAT,
                           "lr": ListOf(Num(lo=0))},
                          what="a method's point"), key_what="a method"),
                key=_BUDGET, key_what="a budget",
            ),
            "paired": MapOf(
                MapOf(Obj(optional={"n": Opt(COUNT), "diffs": Opt(ListOf(Num())), "mean_diff": Opt(Num()),
                                    "std_diff": Opt(Num()), "ci95": Opt(ListOf(Num(), 2, 2)),
                                    "seeds_for_1pt": Opt(COUNT),
                                    "t_test_p": Opt(Num()), "wilcoxon_p": Opt(Num())}, what="a paired comparison")),
                key=_BUDGET, key_what="a budget",
            ),
            "search": MapOf(
                Obj({"objective": Str()},
                    {"winner_source": Opt(Str()), "trials": Opt(COUNT), "seconds": Opt(Num(lo=0)), "best": Opt(Num()),
                     "knapsack": Opt(Num()), "margin": Opt(Num()), "pruned": Opt(COUNT), "train_steps": Opt(COUNT), "rung_steps": Opt(COUNT),
                     "trial_seeds": Opt(COUNT), "tie_rule": Opt(MapOf(AnyValue()))},
                    what="a budget's search"),
                key=_BUDGET, key_what="a budget",
            ),
            "selection": MapOf(Opt(_SELECTION), key=_BUDGET, key_what="a budget"),
        },
    ),
    writer="heterosearch frontier",
    fix="restore it, or rerun `heterosearch frontier` (which writes it) into a new --out",
    format_version=1,
)

