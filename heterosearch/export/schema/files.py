"""The schema of every run-folder file heterosearch reads back (fields, cross-field invariants, the fix)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    short,
)

# -- building blocks shared by several files ---------------------------------------------------
RANK = Int(lo=0, what="a whole number (ranks >= 0)")
LAYER = Int(lo=0, what="a layer number (a whole number >= 0)")
COUNT = Int(lo=0)
SECONDS = Num(lo=0)
DIGITS = r"[0-9]{1,18}"

# The shipped kinds' element fields, checked here so a damaged file is named field by field; a
# kind added later (adapters/<kind>/) gets a list of element objects, which its element's
# from_dict checks when the allocation is used (a UserError naming the kind).
_KIND_SECTIONS: dict[str, Any] = {
    "lora": MapOf(RANK, what="a mapping of site -> rank"),
    "shortcut": ListOf(Obj({"layer": LAYER, "ctype": Str(), "rank": RANK}, what="a shortcut element"),
                       what="a list of shortcut elements"),
    "bank": ListOf(Obj({"role": Str(), "layers": ListOf(LAYER, min_len=1), "rank": RANK, "variant": Str()},
                       what="a bank element"), what="a list of bank elements"),
    "mos": ListOf(Obj({"role": Str(), "r_e": COUNT, "shards": COUNT, "r_p": COUNT,
                       "ranks": MapOf(RANK, key=DIGITS, key_what="a layer number", min_len=1)},
                      what="a MoS element"), what="a list of MoS elements"),
}


def _allocation_spec() -> Obj:
    """Every registered kind's section (space/kinds.py), the shipped ones in detail."""
    from heterosearch.space.kinds import SECTIONS

    sections = dict(_KIND_SECTIONS)
    for name in SECTIONS.names():
        sections.setdefault(name, ListOf(Obj(what=f"a {name} element"), what=f"a list of {name} elements"))
    return Obj(optional=sections, closed=True, what=f"an allocation (an object with {', '.join(sections)})")


ALLOCATION = _allocation_spec()
SITE = Obj({"key": Str(), "layer": LAYER, "role": Str()},
           {"name": Str(), "d_in": Int(lo=1), "d_out": Int(lo=1)}, what="a site (key, layer, role, ...)")
METRICS = MapOf(Num(), key_what="a metric name", what="an object of metric -> finite number")
SPLIT_METRICS = MapOf(METRICS, key_what="a split name", what="an object of split -> {metric -> number}")
SEARCH_SUMMARY = {
    "trials": COUNT,
    "feasible_trials": COUNT,
    "seconds": SECONDS,
    "best_objective": Num(),
    "ratio": Num(),
    "exact_objective": Num(),
    "winner_source": Str(),
}
SEARCH_OPTIONAL = {
    "repaired_trials": COUNT,
    "proxy": Str(),
    "objective": Str(),
    "objective_name": Str(),  # proxy | lookahead | train: the report and plot read it
    "exact": Bool(),
    "best_params": COUNT,
    "exact_params": COUNT,
    "exact_seconds": SECONDS,
    "optuna_allocation": ALLOCATION,
    "winner": ALLOCATION,
}
# One trained model as the run's own verification (verify.json, results.json "verify") records it.
TRAINED = Obj(
    {"name": Str(), "params": COUNT, "splits": SPLIT_METRICS, "steps": COUNT, "seconds": SECONDS},
    {
        "head_params": Opt(COUNT),
        "allocation": ALLOCATION,
        "trivial": MapOf(Bool(), what="an object of split -> true/false"),
        "train_loss": Opt(Num(finite=False)),
        "tokens_per_second": Opt(Num(finite=False)),
        "resumed_from_step": Opt(COUNT),
    },
    what="a trained model's record",
)
# tasks/_metrics.compare's record: the report prints it (comparison_line), so its shape is checked.
COMPARISON = Obj(
    {"metric": Str(), "split": Str(), "lower_is_better": Bool(), "winner": Opt(Num(finite=False)),
     "baseline": Opt(Num(finite=False))},
    {"winner_minus_baseline": Opt(Num(finite=False)), "better": Opt(Str())},
    what="the winner-baseline comparison",
)
VERIFY_OPTIONAL = {
    "winner": TRAINED,
    "baseline": TRAINED,
    "comparison": COMPARISON,
    "train_config": MapOf(AnyValue()),
    "split_roles": MapOf(AnyValue()),
    "both_trivial": Bool(),
}


# -- the files ---------------------------------------------------------------------------------
Invariant = Callable[[dict[str, Any]], "tuple[tuple[Any, ...], str] | None"]


@dataclass
class FileSchema:
    """The schema of one run-folder file: its fields, its cross-field invariants, and how to fix it."""

    title: str  # "a heterosearch <title> file"
    spec: Obj
    writer: str  # the command that writes it (a missing file)
    fix: str  # how to get a good file back (a damaged one)
    format_version: int | None = None  # the newest version this heterosearch reads
    format: str | None = None  # the value of a "format" field, when the file has one
    invariants: tuple[Invariant, ...] = ()


def _config_keys(doc: dict[str, Any]) -> tuple[tuple[Any, ...], str] | None:
    """config.json's settings become ``RunConfig(**settings)``: a name it does not know would be a TypeError."""
    from dataclasses import fields

    from heterosearch.pipeline.config import RunConfig

    known = {f.name for f in fields(RunConfig)}
    extra = [k for k in doc["config"] if k not in known]
    if extra:
        return ("config", extra[0]), "is not a setting this heterosearch knows"
    return None


def _scores_curves(doc: dict[str, Any]) -> tuple[tuple[Any, ...], str] | None:
    """Every site has a curve under every proxy, with a value at every rank 0..r_max (the search indexes them)."""
    n = doc["r_max"] + 1
    keys = [s["key"] for s in doc["sites"]]
    for proxy, curves in doc["curves"].items():
        for key in keys:
            if key not in curves:
                return ("curves", proxy, key), "is missing (every site in 'sites' needs a curve)"
        for key, curve in curves.items():
            if len(curve) != n:
                return ("curves", proxy, key), f"must have r_max + 1 = {n} values (ranks 0..r_max), got {len(curve)}"
    return None


def _summary_has_metric(doc: dict[str, Any]) -> tuple[tuple[Any, ...], str] | None:
    """The report reads the file's main metric in every split, and plots the methods it lists in 'methods_order'."""
    for split, by_metric in (doc.get("summary") or {}).items():
        if doc["metric"] not in by_metric:
            return ("summary", split), f"has no entry for the file's metric {short(doc['metric'])}"
        methods = by_metric[doc["metric"]]["methods"]
        if not any(m in methods for m in doc.get("methods_order", methods)):
            return ("summary", split, doc["metric"], "methods"), "has none of the methods in 'methods_order'"
    return None


def _adalora_runs(doc: dict[str, Any]) -> tuple[tuple[Any, ...], str] | None:
    """AdaLoRA runs carry the counts the report prints for them."""
    for key, run in (doc.get("runs") or {}).items():
        if run["method"] == "adalora":
            for name in ("params_allocated", "params_lora_equivalent", "target_r", "init_r"):
                if name not in run:
                    return ("runs", key, name), "is missing (an adalora run records it)"
    return None


def _rank_report_complete(doc: dict[str, Any]) -> tuple[tuple[Any, ...], str] | None:
    """A complete rank report has its statistics, and every trained candidate has every seed and proxy."""
    if doc["status"] == "complete":
        for name in ("proxies_scored", "proxies", "noise_ceiling", "baselines"):
            if name not in doc:
                return (name,), "is missing (a complete rank report has it)"
    seeds = [str(s) for s in doc["seeds"]]
    proxies = doc.get("proxies_scored", [])
    entries = [(("candidates", i), c) for i, c in enumerate(doc["candidates"])]
    if doc.get("uniform"):
        entries.append((("uniform",), doc["uniform"]))
    for where, c in entries:
        for run_key, run in c["runs"].items():
            if doc["metric"] not in run["metrics"]:
                metric = short(doc["metric"])
                return (*where, "runs", run_key, "metrics"), f"has no value for the report's metric {metric}"
        for target, mean in (("acc", "mean"), ("neg_loss", "neg_loss_mean")):
            if mean in c:
                missing = [s for s in seeds if s not in c.get(target, {})]
                if missing:
                    return (*where, target), f"has no value for seed {missing[0]}"
                values = [c[target][s] for s in seeds]  # the plot draws the seeds as a bar around their mean
                if not min(values) <= c[mean] <= max(values):
                    return (*where, mean), f"must lie between the per-seed values in '{target}' (it is their mean)"
        if ("mean" in c or "neg_loss_mean" in c) and where != ("uniform",):
            missing = [p for p in proxies if p not in c["scores"]]
            if missing:
                return (*where, "scores"), f"has no score for proxy {short(missing[0])}"
        if where == ("uniform",) and "mean" in c and "fraction_of_samples_above" not in c:
            return (*where, "fraction_of_samples_above"), "is missing (the uniform baseline was trained)"
    return None


def _ci_pairs(doc: dict[str, Any]) -> tuple[tuple[Any, ...], str] | None:
    """An interval has both ends or neither: the report prints ``[low, high]`` when low is set."""
    blocks: list[tuple[tuple[Any, ...], Any]] = []
    parts = [(doc, ()), *((doc.get(name), (name,)) for name in ("by_val_loss", "by_dev_loss"))]
    for part, prefix in parts:
        if not part:
            continue
        blocks += [((*prefix, "proxies", p), st) for p, st in part.get("proxies", {}).items()]
        if "noise_ceiling" in part:
            blocks.append(((*prefix, "noise_ceiling"), part["noise_ceiling"]))
        for b in ("params", "random"):
            if b in part.get("baselines", {}):
                blocks.append(((*prefix, "baselines", b), part["baselines"][b]))
    for where, st in blocks:
        for stat in ("spearman", "kendall", "top_k_precision"):
            ci = st[stat]
            if (ci.get("low") is None) != (ci.get("high") is None):
                return (*where, stat), "must have both 'low' and 'high', or neither"
    return None


CONFIG = FileSchema(
    title="run config",
    spec=Obj(
        {
            "config": Obj(
                optional={
                    "budget": Opt(Int(lo=0)),
                    "task": Str(),
                    "model": Opt(Str()),
                    "space": Str(),
                    "proxy": Str(),
                    "trials": Int(lo=0),
                    "train_steps": Opt(Int(lo=1)),
                    "rung_steps": Opt(Int(lo=0)),
                    "val_examples": Opt(Int(lo=0)),
                    "trial_seeds": Opt(Int(lo=1)),
                    "train_epochs": Num(),
                    "max_train_steps": Opt(Int(lo=0)),
                    "seed": Int(lo=0),
                    "data_dir": Opt(Str()),
                    "out": Opt(Str()),
                    "score_batches": Int(lo=0),
                    "batch_size": Int(lo=0),
                    "max_length": Int(lo=0),
                    "lr": Num(),
                    "warmup": Num(),
                    "lora_dropout": Num(),
                    "val_fraction": Num(),
                    "split_seed": Int(lo=0),
                    "proxies": ListOf(Str()),
                    "storage": Opt(Str()),
                    "text_columns": Opt(Str()),
                    "label_column": Opt(Str()),
                    "problem": Opt(Str()),
                },
                what="an object of run settings",
            )
        },
        {"versions": MapOf(AnyValue()), "space": MapOf(AnyValue()), "argv": ListOf(AnyValue())},
    ),
    writer="heterosearch run",
    fix="restore it, or rerun `heterosearch run` (or `score`) with --out FOLDER --overwrite, which rewrites it "
    "and replaces the run",
    invariants=(_config_keys,),
)
SCORES = FileSchema(
    title="proxy scores",
    spec=Obj(
        {
            "sites": ListOf(SITE),
            "r_max": Int(lo=0, hi=1_000_000),
            "curves": MapOf(MapOf(ListOf(Num(), min_len=1), key_what="a site key"), key_what="a proxy name",
                            what="an object of proxy -> site -> scores per rank"),
        },
        {
            "meta": MapOf(AnyValue()),
            "kinds": MapOf(Obj(optional={
                "shortcut": MapOf(ListOf(Num())),
                "bank": MapOf(MapOf(Num())),
                "mos": MapOf(MapOf(Num())),
            })),
            "undefined": MapOf(MapOf(Str())),
        },
    ),
    writer="heterosearch score",
    fix="delete it and rerun `heterosearch search RUN --budget B` (it rescores first), or `heterosearch score` "
    "with the run's settings",
    invariants=(_scores_curves,),
)
SEARCH = FileSchema(
    title="search",
    spec=Obj(
        {**SEARCH_SUMMARY, "winner": ALLOCATION},
        {
            **SEARCH_OPTIONAL,
            "history": ListOf(Obj({"number": COUNT, "value": Opt(Num())},
                                  {"params": Opt(COUNT), "feasible": Bool(), "repaired": Bool()},
                                  what="a trial record")),
        },
    ),
    writer="heterosearch search RUN --budget B",
    fix="rerun `heterosearch search RUN --budget B` to rewrite it",
)
ALLOCATION_FILE = FileSchema(
    title="allocation",
    spec=Obj(
        {"allocation": ALLOCATION},
        {
            "format_version": COUNT,
            "scaling": Num(what="a finite number (the LoRA scaling alpha/r)"),  # files before the scale rule
            "scale": Obj({"rule": Str(), "alpha": Num()}, closed=True, what="a LoRA scale rule {rule, alpha}"),
            "budget": Opt(COUNT),
            "params": COUNT,
            "elements": ListOf(MapOf(AnyValue())),
        },
    ),
    writer="heterosearch export RUN",
    fix="rerun `heterosearch export RUN` to rewrite it (with adapter_config.json)",
    format_version=1,  # allocation_file.FORMAT_VERSION and .FORMAT (that module imports this one; a test ties them)
    format="heterosearch.allocation",
)
VERIFY = FileSchema(
    title="verification",
    spec=Obj(optional=VERIFY_OPTIONAL),
    writer="heterosearch train RUN",
    fix="delete it and rerun `heterosearch train RUN` (it rewrites verify.json, results.json and report.md)",
)
RESULTS = FileSchema(
    title="results",
    spec=Obj(
        {
            "task": Str(),
            "model": Str(),
            "space": Obj({"name": AnyValue(), "version": AnyValue()}),
            "budget": COUNT,
            "params": COUNT,
            "proxy": Str(),
            "seed": COUNT,
            "allocation": ALLOCATION,
            "search": Obj(SEARCH_SUMMARY, SEARCH_OPTIONAL, what="the search summary"),
            "scoring": Obj({"scoring_state": AnyValue()}),
            "versions": MapOf(AnyValue()),
        },
        {
            "sites": ListOf(SITE),
            "head_params": Opt(COUNT),
            "verify": Opt(Obj({"winner": TRAINED, "baseline": TRAINED}, VERIFY_OPTIONAL, what="the verification")),
            "splits": Opt(MapOf(AnyValue())),
            "timings": MapOf(Num(), what="an object of stage -> seconds"),
        },
    ),
    writer="heterosearch train RUN",
    fix="rerun `heterosearch train RUN` to rewrite it (with report.md)",
)
