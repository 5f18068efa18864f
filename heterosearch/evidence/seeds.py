"""The ``verify`` command: the winner and every baseline, trained at the same budget over seeds.

Not the run's ``train`` stage (``pipeline.train_stage.stage_verify``, one seed, ``verify.json``),
whose winner/uniform q,v pair at the run's seed it reuses. ``verify_run`` trains every (method, seed) pair with the run's training recipe (the same
data order, schedule, head initialisation and adapter seed for every method at a given
seed), writes ``RUN/verify_seeds.json`` after each pair (a rerun skips finished pairs),
then summarises: mean and standard deviation (ddof=1) per method, and the paired
difference winner - baseline per seed, with a paired t-test and a Wilcoxon signed-rank
test when there are at least 3 seeds (``verify/statistics.py``); and the validated pick
(``evidence/selection.py``): the winner only if it beats uniform LoRA on all sites on the
validation split by more than the seed noise, else uniform LoRA on all sites.

``verify_seeds.json`` schema (version 1): ``run``, ``task``, ``budget``, ``winner_params``,
``metric`` (the task's main metric), ``seeds``, ``methods`` (per method: the plan,
``params`` exact, ``target``, ``gap``, ``within_2pct``; ``random`` has one plan per seed),
``unavailable`` (method -> reason), ``train_config`` (without the seed), ``runs``
(``"method/seed"`` -> metrics per split, params, steps, seconds, ...), ``summary``
(split -> metric -> ``methods`` {mean, std, n, values} and ``paired`` {method: diffs,
mean, std, t-test and Wilcoxon p}), ``selection`` (the validated pick, or None when uniform_all
was not verified), ``timings``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.evidence.baselines import METHODS, Planned, plan_baselines, random_baseline
from heterosearch.evidence.jobs import Inputs, open_queue, run_jobs, verify_spec
from heterosearch.evidence.statistics import summarize
from heterosearch.export.files import write_json
from heterosearch.export.schema import read_run_file
from heterosearch.pipeline.files import VERIFY_SEEDS_FILE
from heterosearch.progress import say
from heterosearch.tasks._metrics import format_metric

FORMAT_VERSION = 1


# -- the run ------------------------------------------------------------------------------
def open_run(run_dir: Path, **overrides: Any) -> Any:
    """The run folder's ``Run`` (settings from config.json, ``overrides`` not None replacing them), without rewriting config.json."""
    from heterosearch.pipeline.files import CONFIG_FILE
    from heterosearch.pipeline.folder import Run, stored_config

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"{run_dir} is not a heterosearch run folder (no {CONFIG_FILE}); make one with `heterosearch run`")
    run = Run(cfg=stored_config(run_dir, **overrides), out=run_dir)
    from heterosearch import run_folder

    run_folder.lock(run_dir)  # verify writes verify_seeds.json: one writer per folder
    run.check_same_data()  # every method trains on the data the run was searched on
    return run


def _train_config(run: Any, train_epochs: float | None, max_train_steps: int | None) -> Any:
    return run.train_config(epochs=train_epochs, max_steps=max_train_steps)


def parse_methods(methods: str | Sequence[str] | None) -> list[str]:
    if methods is None:
        return list(METHODS)
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise UserError(f"unknown verify method(s) {', '.join(unknown)} (known: {', '.join(METHODS)})")
    if "winner" not in names:
        names.insert(0, "winner")  # every comparison is against the winner
    return [m for m in METHODS if m in names]


def _seed_list(seeds: int | Sequence[int], first: int) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise UserError(f"--seeds must be >= 1, got {seeds}")
        return [first + i for i in range(seeds)]
    return [int(s) for s in seeds]


def _from_verify_json(run: Any, method: str, seed: int, plan: Planned, cfg: Any) -> dict[str, Any] | None:
    """The run's own verify.json already trained winner and uniform q,v at the run's seed: reuse them."""
    from heterosearch.pipeline.files import VERIFY_FILE

    path = run.path(VERIFY_FILE)
    if seed != run.cfg.seed or method not in ("winner", "uniform_qv") or not path.is_file():
        return None
    done = read_run_file(path, VERIFY_FILE)
    label = "winner" if method == "winner" else "baseline"
    entry = done.get(label)
    if not entry or entry.get("allocation") != plan.allocation.to_dict() or done.get("train_config") != cfg.to_dict():
        return None
    return {
        "params": entry["params"],
        "head_params": entry.get("head_params"),
        "splits": entry["splits"],
        "steps": entry["steps"],
        "train_loss": entry.get("train_loss"),
        "seconds": entry.get("seconds"),
        "tokens_per_second": entry.get("tokens_per_second"),
        "source": VERIFY_FILE,
    }


def verify_run(run_dir: Path | str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Train every method for every seed (skipping finished pairs), then write the statistics.

    Arguments as ``_verify_run``. Holds the run folder's lock while it works.
    """
    from heterosearch import run_folder

    held_before = run_folder.holds(Path(run_dir))
    try:
        return _verify_run(run_dir, *args, **kwargs)
    finally:
        if not held_before:
            run_folder.unlock(Path(run_dir))


def _verify_run(
    run_dir: Path | str,
    seeds: int | Sequence[int] = 3,
    methods: str | Sequence[str] | None = None,
    train_epochs: float | None = None,
    max_train_steps: int | None = None,
    overwrite: bool = False,
    recipe: dict[str, Any] | None = None,
    queue: Any = None,
    reuse_from: Sequence[Path | str] = (),
) -> dict[str, Any]:
    """Train every method for every seed (skipping finished pairs), then write the statistics.

    ``recipe``: training settings (``lr``, ``warmup``, ``batch_size``, ``max_length``, ``lora_dropout``)
    that replace the run's for these trainings (config.json is not changed).
    The trainings are jobs (``evidence/jobs.py``) in ``queue`` (default: the run's own, in its
    study storage), so ``heterosearch worker RUN --jobs`` processes can take some of them.
    ``reuse_from``: other run folders whose finished trainings of the same plan, seed, recipe,
    data and model are taken instead of retrained (``evidence/reuse.py``).
    """
    from heterosearch.pipeline.files import SCORES_FILE
    from heterosearch.pipeline.stages import load_winner
    from heterosearch.proxies import Scores

    t_start = time.perf_counter()
    run = open_run(Path(run_dir), **(recipe or {}))
    names = parse_methods(methods)
    seed_list = _seed_list(seeds, run.cfg.seed)
    budget = run.require_budget()
    winner, _ = load_winner(run)
    scores = Scores.load(run.path(SCORES_FILE)) if run.path(SCORES_FILE).is_file() else None
    grad_norm = scores.curves.get("grad_norm") if scores is not None else None
    cfg = _train_config(run, train_epochs, max_train_steps)

    target = winner.params(run.site_map)
    fixed = plan_baselines(
        run.sites, run.baseline_roles(), run.space.lora.ranks, budget, winner, grad_norm,
        seed=run.cfg.seed, methods=[m for m in names if m != "random"], target=target,
    )
    unavailable = {m: p for m, p in fixed.items() if isinstance(p, str)}
    plans: dict[str, Planned] = {m: p for m, p in fixed.items() if isinstance(p, Planned)}
    from heterosearch.evidence.adalora import ADALORA_MIN_STEPS

    n_steps = cfg.steps_for(len(run.encoded["train"]))
    if "adalora" in plans and n_steps < ADALORA_MIN_STEPS:  # its rank schedule needs room (PEFT fails below)
        del plans["adalora"]
        unavailable["adalora"] = f"AdaLoRA's rank schedule needs >= {ADALORA_MIN_STEPS} training steps, this recipe has {n_steps}"
    for m, why in unavailable.items():
        say(f"[yellow]verify: skipping {m}: {why}[/yellow]")

    path = run.path(VERIFY_SEEDS_FILE)
    state: dict[str, Any] = read_run_file(path, VERIFY_SEEDS_FILE) if path.is_file() and not overwrite else {}
    if state and state.get("train_config") != cfg.without_seed():
        raise UserError(
            f"{path} was trained with other settings ({state.get('train_config')}); "
            "pass the same --train-epochs/--max-train-steps/--lr/--warmup/--batch-size/--max-length/--lora-dropout, "
            "or --overwrite to start over"
        )
    runs: dict[str, Any] = state.get("runs", {})
    method_info: dict[str, Any] = dict(state.get("methods", {}))
    for m, p in plans.items():
        method_info[m] = p.to_dict()
    state.update(
        {
            "format_version": FORMAT_VERSION,
            "run": str(run.out),
            "task": run.cfg.task,
            "model": run.cfg.model or "all-MiniLM-L6-v2",
            "budget": budget,
            "winner_params": target,
            "metric": run.spec.main_metric,
            "seeds": sorted(set(state.get("seeds", [])) | set(seed_list)),
            "methods_order": [m for m in METHODS if m in set(names) | set(method_info)],
            "methods": method_info,
            "unavailable": unavailable,
            "train_config": cfg.without_seed(),
            "runs": runs,
        }
    )
    run.tokenizer  # noqa: B018  (loads the tokenizer; drop the model it loaded alongside)
    run.drop_spare_model()
    evals = {k: v for k, v in run.encoded.items() if k != "train"}
    state["splits"] = sorted(evals)
    state["test_split"] = ("the GLUE dev file (report only; GLUE test labels are private)" if run.spec.kind == "glue"
                           else run.splits["roles"]["test"])
    state["split_roles"] = run.splits
    timings: dict[str, float] = dict(state.get("timings", {}))

    todo: dict[str, tuple[str, int, Planned]] = {}  # key -> (method, seed, plan), in training order
    for seed in seed_list:
        for method in names:
            if method in unavailable:
                continue
            plan = random_baseline(run.sites, run.space.lora.ranks, target, seed) if method == "random" else plans[method]
            if method == "random":
                method_info.setdefault("random", {"method": "random", "per_seed": {}})
                method_info["random"].setdefault("per_seed", {})[str(seed)] = plan.to_dict()
                method_info["random"].update({"name": "random allocations drawn from the space (one per seed)", "rule": plan.rule, "target": target})
            key = f"{method}/{seed}"
            alloc = plan.allocation.to_dict() if plan.allocation is not None else None
            old = runs.get(key)
            if old and old.get("allocation") == alloc and old.get("planned_params") == plan.params:
                continue
            todo[key] = (method, seed, plan)

    fresh: dict[str, tuple[dict[str, Any], float]] = {}  # key -> (entry, seconds), in arrival order
    reusable: dict[str, dict[str, Any]] = {}
    if reuse_from and todo:
        from heterosearch import recipe
        from heterosearch.evidence.reuse import reusable_runs

        reusable, refused = reusable_runs(run.out, reuse_from, cfg.without_seed(), adalora_lr=recipe.adalora_lr(run.cfg.lr))
        for folder, why in refused.items():
            say(f"[yellow]verify: not reusing {folder}: {why}[/yellow]")

    def record(key: str, entry: dict[str, Any], seconds: float) -> None:
        method, seed, plan = todo[key]
        entry = {
            "method": method,
            "seed": seed,
            "name": plan.name,
            "allocation": plan.allocation.to_dict() if plan.allocation is not None else None,
            "planned_params": plan.params,
            "target": target,
            "gap": (entry["params"] - target) / target,
            **entry,
        }
        fresh[key] = (entry, seconds)
        # In training order whatever order the jobs finished in, so the file is the same either way:
        # a dict keeps its first insertion order, so take the fresh keys out and put them back in order.
        for k in todo:
            if k in fresh:
                runs.pop(k, None)
                timings.pop(k, None)
        for k in todo:
            if k in fresh:
                runs[k], timings[k] = fresh[k]
        state["timings"] = timings
        write_json(path, state)
        main = entry["splits"].get("test", {}).get(run.spec.main_metric)
        how = f"{seconds:.0f}s" if entry.get("source", "trained") == "trained" else f"reused from {entry['source']}"
        say(f"verify: {method} seed {seed}: test {run.spec.main_metric} "
            f"{format_metric(run.spec.main_metric, main)} ({entry['params']:,} params, {how})")

    specs: dict[str, dict[str, Any]] = {}
    for key, (method, seed, plan) in todo.items():
        t0 = time.perf_counter()
        reused = _from_verify_json(run, method, seed, plan, _train_config_seeded(cfg, seed))
        if reused is None and reusable:
            from heterosearch.evidence.reuse import reused_entry

            alloc = plan.allocation.to_dict() if plan.allocation is not None else None
            reused = reused_entry(reusable, key, alloc, plan.params)
        if reused is not None:
            record(key, reused, time.perf_counter() - t0)
        else:
            specs[key] = verify_spec(run, plan, seed, _train_config_seeded(cfg, seed), list(evals))
    own = queue is None and bool(specs)
    if own:
        queue = open_queue(run.out, fresh=overwrite)  # --overwrite: no result of the old queue is reused
    inputs = Inputs()
    inputs.add(run)
    try:
        run_jobs(queue, {f"{run.out.resolve()}:{k}": v for k, v in specs.items()},
                 lambda k, entry, seconds: record(k.rsplit(":", 1)[1], entry, seconds), inputs)
    finally:
        if own:
            queue.set_closed(True)
    state["summary"] = summarize({k: v for k, v in runs.items() if v["seed"] in state["seeds"]}, state["methods_order"])
    from heterosearch.evidence.selection import select

    state["selection"] = select(state["summary"], state["metric"])  # None: uniform_all not verified
    timings["last_invocation"] = time.perf_counter() - t_start
    state["timings"] = timings
    write_json(path, state)
    return state


def _train_config_seeded(cfg: Any, seed: int) -> Any:
    from dataclasses import replace

    return replace(cfg, seed=seed)
