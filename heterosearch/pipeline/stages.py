"""The stages of a run, in order: score -> search -> export -> train (``stage_verify``) -> results.

Each stage reads and writes files in the run folder (``pipeline/files.py``), so the CLI's
stage commands (``score``, ``search``, ``export``, ``train``) and ``run`` share one code
path, and a resumed run skips what is already on disk.

Names: the CLI's ``train`` stage is ``stage_verify`` (``pipeline/train_stage.py``) and writes
``verify.json``: it short-trains the winner and the uniform baseline once, at the run's seed.
The ``verify`` command (``heterosearch.verify``) is the multi-seed evidence on top of a finished
run and writes ``verify_seeds.json``; it is not a stage of ``run``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from heterosearch import run_folder
from heterosearch.errors import UserError
from heterosearch.export.files import write_json
from heterosearch.export.schema import read_run_file
from heterosearch.pipeline.config import RunConfig, versions
from heterosearch.pipeline.files import (
    ALLOCATION_FILE,
    INPUTS_KEY,
    RESULTS_FILE,
    SCORES_FILE,
    SEARCH_FILE,
    STUDY_FILE,
    check_current,
    input_hashes,
    remove_stale,
)
from heterosearch.pipeline.folder import Run
from heterosearch.pipeline.train_stage import stage_verify
from heterosearch.progress import say
from heterosearch.space import format_params
from heterosearch.space.allocation import Allocation, largest_uniform_rank, uniform_allocation
from heterosearch.version import __version__


def stage_score(run: Run) -> Any:
    """Score every (site, rank) candidate with every proxy; cached in scores.json."""
    from heterosearch.proxies import Scores
    from heterosearch.proxies.calibration import calibrate, factors_recorded, first_batches
    from heterosearch.proxies.kinds import score_space
    from heterosearch.tasks.batching import collate, train_batches

    path = run.path(SCORES_FILE)
    other_kinds = sorted(set(run.space.kinds) - {"lora"})
    if path.is_file():
        scores = Scores.load(path)
        have_kinds = all(k in scores.kinds.get("spectral", {}) or k in scores.undefined.get("spectral", {}) for k in other_kinds)
        calibrated = run.space.calibration is None or factors_recorded(scores, run.cfg.proxy)
        if set(run.cfg.proxies) <= set(scores.curves) and (have_kinds or "spectral" not in run.cfg.proxies) and calibrated:
            say(f"[dim]scores: reusing {path}[/dim]")
            return scores
    t0 = time.perf_counter()
    enc = run.encoded["train"]
    idx = train_batches(enc, run.cfg.batch_size, run.cfg.seed, epoch=0)[: run.cfg.score_batches]
    batches = [collate(run.tokenizer, enc, i) for i in idx]
    model = run.take_model()  # the one loaded with the tokenizer, if unused
    scores = score_space(model, run.sites, batches, run.space, run.cfg.proxies, run.cfg.seed, run.cfg.scoring_options())
    if run.space.calibration is not None:  # the space asks for it: proxies/calibration.py
        cal = run.space.calibration
        val = first_batches(run.tokenizer, run.encoded["val"], run.cfg.batch_size, cal.val_batches)
        # with_head trains on `steps` distinct batches (epoch 0's order, the scoring batches first);
        # frozen_head cycles the scoring batches, as it always has.
        train = (first_batches(run.tokenizer, enc, run.cfg.batch_size, cal.steps, run.cfg.seed)
                 if cal.signal == "with_head" else batches)
        scores.meta["calibration"] = calibrate(model, run.sites, run.space, scores, run.cfg.proxy, train, val,
                                               cal, run.cfg.seed)
    scores.save(path)
    _dropped(run, "score", remove_stale(run.out, "score"))  # new scores: the search and all after it are stale
    run.timings["score"] = time.perf_counter() - t0
    say(f"scores: {len(run.sites)} sites x {len(run.space.lora.ranks) - 1} ranks x {len(run.cfg.proxies)} proxies "
        f"from {len(batches)} batches in {run.timings['score']:.1f}s")
    return scores


def stage_search(run: Run, scores: Any) -> tuple[Allocation, dict[str, Any]]:
    """Optuna study + exact optimum of the same objective; the better one is the winner.

    ``--objective lookahead`` or ``train`` (``pipeline/objectives.py``): the study is warm-started
    with the exact optimum of the proxy, the uniform baselines and the proxy's diverse shortlist
    (``optimize/warm.py``) and maximises that objective on the validation split; its best
    COMPLETE trial wins.
    """
    from heterosearch.optimize import run_search
    from heterosearch.optimize.build import build_problem, decode
    from heterosearch.optimize.shortlist import shortlist
    from heterosearch.optimize.study import PARAM_PREFIX, default_study_name
    from heterosearch.pipeline.objectives import DESCRIPTIONS, search_setup, summary_section
    from heterosearch.proxies.calibration import factors_for

    t0 = time.perf_counter()
    factors = factors_for(scores, run.cfg.proxy) if run.space.calibration is not None else None
    problem = build_problem(run.space, run.sites, scores, run.cfg.proxy, run.require_budget(), calibration=factors)
    roles = run.baseline_roles()
    enq_rank = largest_uniform_rank(run.sites, roles, run.cfg.budget, run.space.lora.ranks)
    enq_lora = uniform_allocation(run.sites, roles, enq_rank).lora if enq_rank else {}
    enqueue = problem.baseline_choice({PARAM_PREFIX + k: r for k, r in enq_lora.items()}) if enq_rank else None
    picks = shortlist(problem)
    setup = search_setup(run, problem, picks, roles)
    extra = dict(setup)
    result = run_search(problem, run.cfg.trials, run.cfg.seed, run.path(STUDY_FILE), enqueue=extra.pop("enqueue", enqueue),
                        storage=run.cfg.storage, study_name=default_study_name(run.out, run.cfg.storage), **extra)
    lookahead_run = run.cfg.objective != "proxy"  # lookahead or train: the knapsack's pick is one of the trials
    if lookahead_run:
        use_exact = False  # the exact optimum is the proxy's: it competes as the warm-start trial "warm:exact"
        source = "optuna" if result.best_source.startswith("sampler") else result.best_source
        # On this objective the knapsack's pick is the trial "warm:exact": the ratio compares against it.
        exact_value = result.exact_trial_value
        if exact_value is None:  # not among the trials (fewer trials than warm starts on a resumed study): score it
            exact_value = float(extra["evaluate"](result.exact_choice))
        ratio = result.best_objective / exact_value if exact_value > 0 else 1.0
    else:
        use_exact = result.exact_objective >= result.best_objective
        source = "exact" if use_exact else "optuna"
        exact_value, ratio = result.exact_objective, result.ratio
    winner = decode(result.exact_choice if use_exact else result.best_choice, run.space, run.sites)
    summary = {
        "proxy": run.cfg.proxy,
        "objective": DESCRIPTIONS[run.cfg.objective],
        "objective_name": run.cfg.objective,
        "exact": result.exact,
        "best_objective": result.best_objective,
        "best_params": result.best_params,
        "exact_objective": exact_value,  # lookahead, train: the knapsack pick's value on it (its proxy value below)
        "exact_proxy_objective": result.exact_objective,
        "exact_params": result.exact_params,
        "ratio": ratio,
        "trials": result.trials,
        "feasible_trials": result.feasible_trials,
        "repaired_trials": sum(bool(h.get("repaired")) for h in result.history),
        "seconds": result.seconds,
        "exact_seconds": result.exact_seconds,
        "exact_frontier": [[int(b), v] for b, v in result.exact_frontier],  # optimum at every budget up to this one
        "shortlist": [{**p.to_dict(), "allocation": decode(p.choice, run.space, run.sites).to_dict()} for p in picks],
        "winner_source": source,
        "winner_trial": None if use_exact else result.best_number,
        # the study's best trial (its params are what it evaluated); under the tie rule Optuna's best_trial, which
        # may not be the winner
        "optuna_best_trial": (result.tie_rule or {}).get("best_trial", result.best_number),
        "optuna_allocation": decode(result.best_choice, run.space, run.sites).to_dict() if result.best_choice else {},
        "enqueued_baseline": {"roles": list(roles), "rank": enq_rank},
        "study": STUDY_FILE if run.cfg.storage is None else result.storage,
        "study_name": result.study_name,
        "winner": winner.to_dict(),
        "history": result.history,
    }
    summary["budget"] = run.cfg.budget
    if run.space.calibration is not None:  # what scaled each kind's values (proxies/calibration.py)
        summary["calibration"] = {**scores.meta.get("calibration", {}), "applied": factors is not None}
    if lookahead_run:
        summary[run.cfg.objective] = summary_section(run.cfg.objective, setup, result, exact_value)
    summary[INPUTS_KEY] = input_hashes(run.out, "search")  # the scores it was searched on (pipeline/files.py)
    changed = _search_changed(run, summary)
    old = _read_json(run.path(SEARCH_FILE))
    if old.get("study_name") == summary["study_name"] and isinstance(old.get("seconds"), (int, float)):
        # A resumed study: its trials include the earlier invocations', so its seconds do too
        # (a rerun that finds every trial done would otherwise record a fraction of a millisecond).
        summary["seconds"] = float(old["seconds"]) + result.seconds
        summary["last_invocation_seconds"] = result.seconds
        section, before = summary.get(run.cfg.objective), old.get(run.cfg.objective)
        if isinstance(section, dict) and isinstance(before, dict):
            for key in ("seconds_per_trial", "cpu_seconds_per_trial"):
                if section.get(key) is None and before.get(key) is not None:
                    section[key] = before[key]  # this invocation trained nothing: keep the medians of the one that did
    write_json(run.path(SEARCH_FILE), summary)
    if changed:  # another winner or budget: the export, trainings and report made from the old one are stale
        _dropped(run, "search", remove_stale(run.out, "search"))
    run.timings["search"] = time.perf_counter() - t0
    compared = (f"{result.best_objective - exact_value:+.4f} over the knapsack pick {exact_value:.4f}" if lookahead_run
                else f"= {100 * ratio:.1f}% of the exact optimum {exact_value:.4f}")  # train values are negative losses
    say(f"search: {result.trials} trials in {result.seconds:.1f}s, best feasible {run.cfg.objective} objective "
        f"{result.best_objective:.4f} {compared} (winner: {source})")
    return winner, summary


def stage_export(run: Run, winner: Allocation) -> dict[str, Any]:
    """allocation.json (ours) + adapter_config.json (PEFT), checked by loading it with PEFT."""
    from heterosearch.export import check_peft_roundtrip, lora_config, save_lora_config, write_allocation

    sites = run.site_map
    head = sum(p.numel() for n, p in run._meta_model().named_parameters() if n.split(".")[0] in ("classifier", "pre_classifier", "score"))
    old = _read_json(run.path(ALLOCATION_FILE))
    data = write_allocation(
        run.path(ALLOCATION_FILE),
        winner,
        sites,
        run.space.lora.scaling,
        model=run.cfg.model or "all-MiniLM-L6-v2",
        task=run.cfg.task,
        space={"name": run.space.name, "version": run.space.version,
               **({"roles": run.space.site_roles} if run.space.site_roles else {})},  # load_adapters finds the sites again
        budget=run.cfg.budget,
        head_params=head,
        proxy=run.cfg.proxy,
        seed=run.cfg.seed,
        versions=versions(),
        **{INPUTS_KEY: input_hashes(run.out, "export")},  # the search.json it was exported from
    )
    # The LoRA part exports to PEFT; banks, pools and shortcuts are heterosearch's own
    # (allocation.json + heterosearch.load_adapters). PEFT reloads from base_model_name_or_path:
    # give it a path it can load (the packaged copy).
    peft_part = Allocation(lora=winner.lora)
    if peft_part.lora:
        config = lora_config(peft_part, sites, run.space.lora.scaling, base_model=run.model_path,
                             task_type=run.peft_task_type, lora_dropout=run.cfg.lora_dropout)
        save_lora_config(config, run.out)
        ranks = {sites[k].name: r for k, r in peft_part.lora.items()}
        check_peft_roundtrip(run._meta_model, run.out, peft_part.params(sites), ranks)
    data["peft_params"] = peft_part.params(sites)
    same_scale = "scale" not in old or old["scale"] == data.get("scale")  # files before the scale rule: unknown, kept
    if _normal(old.get("allocation")) != data["allocation"] or old.get("budget") != data.get("budget") or not same_scale:
        _dropped(run, "export", remove_stale(run.out, "export"))  # weights and results of another allocation
    return data


def write_results(run: Run, winner: Allocation, search: dict[str, Any], verify: dict[str, Any] | None, scores: Any) -> dict[str, Any]:
    """results.json (every stage's outcome in one file; ``verify`` is the train stage's verify.json) and report.md."""
    from heterosearch.report.render import render_run_report

    results = {
        "heterosearch_version": __version__,
        "versions": versions(),
        "argv": sys.argv,
        "task": run.cfg.task,
        "model": run.cfg.model or "all-MiniLM-L6-v2",
        "space": {"name": run.space.name, "version": run.space.version},
        "budget": run.cfg.budget,
        "params": winner.params(run.site_map),
        "head_params": verify["winner"]["head_params"] if verify else None,
        "proxy": run.cfg.proxy,
        "seed": run.cfg.seed,
        "allocation": winner.to_dict(),
        "sites": scores.sites,
        "search": {k: v for k, v in search.items() if k != "history"},
        "scoring": scores.meta,
        "splits": run.splits,
        "provenance": run.provenance(),  # data files' sha256 and the model's revision (pipeline/provenance.py)
        "verify": verify,
        "timings": run.timings,
    }
    write_json(run.path(RESULTS_FILE), results)
    render_run_report(run.out)
    return results


def run_all(cfg: RunConfig, resume: bool = False, overwrite: bool = False, verify: bool = True) -> dict[str, Any]:
    """``heterosearch run``: every stage in order (``verify=False`` skips the train stage), holding the folder's lock."""
    t0 = time.perf_counter()
    out = Path(cfg.out or cfg.default_out())
    held_before = run_folder.holds(out)
    try:
        run = Run.open(cfg, resume=resume, overwrite=overwrite)
        say(f"run folder: {run.out}  (budget {format_params(cfg.budget)}, task {cfg.task}, proxy {cfg.proxy}, seed {cfg.seed})")
        scores = stage_score(run)
        winner, search = stage_search(run, scores)
        stage_export(run, winner)
        verified = stage_verify(run, winner) if verify else None
        run.timings["total"] = time.perf_counter() - t0
        return write_results(run, winner, search, verified, scores)
    finally:
        if not held_before:
            run_folder.unlock(out)


def check_searched(run: Run, search: dict[str, Any]) -> None:
    """Export reads search.json: it must come from the scores in the folder now (pipeline/files.py)."""
    check_current(run.out, "export", {SEARCH_FILE: search})


def load_winner(run: Run) -> tuple[Allocation, dict[str, Any]]:
    """The winner recorded by the search stage."""
    search = read_run_file(run.path(SEARCH_FILE), SEARCH_FILE) if run.path(SEARCH_FILE).is_file() else None
    if search is None:
        raise UserError(f"{run.out} has no {SEARCH_FILE}: run `heterosearch search {run.out} --budget B` first")
    return Allocation.from_dict(search["winner"]), search


def load_results(run_dir: Path) -> dict[str, Any]:
    return read_run_file(Path(run_dir) / RESULTS_FILE, RESULTS_FILE)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _search_changed(run: Run, summary: dict[str, Any]) -> bool:
    """Another winner or budget than the search.json on disk (a resumed, unchanged search keeps what follows)."""
    old = _read_json(run.path(SEARCH_FILE))
    if not old:
        return True
    # search.json files from before the budget was recorded in them: the export's budget, else the same.
    budget = old.get("budget", _read_json(run.path(ALLOCATION_FILE)).get("budget", summary["budget"]))
    return _normal(old.get("winner")) != summary["winner"] or budget != summary["budget"]


def _normal(allocation: Any) -> Any:
    """An allocation as this version writes it (older files may spell the same allocation otherwise); None if unreadable."""
    try:
        return Allocation.from_dict(allocation).to_dict()
    except Exception:  # any malformed old file: compare as "different"
        return None

def _dropped(run: Run, stage: str, removed: list[str]) -> None:
    if removed:
        say(f"[dim]{stage}: output changed, removed what was made from the old one: {', '.join(removed)}[/dim]")
