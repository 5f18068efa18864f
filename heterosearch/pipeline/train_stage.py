"""The run's train stage (stage 4, the CLI's ``train``): ``stage_verify`` and what it checks and writes.

``stage_verify`` short-trains the searched winner and the uniform baseline once, at the run's
seed, with the same data order and schedule, into ``verify.json``; the winner's weights go to
the run folder, and a LoRA-only winner also to ``adapter/`` as a folder plain PEFT loads.
``check_exported`` is the ``train`` command's check that allocation.json is the searched
winner's. The ``verify`` command (``heterosearch.verify``) is the multi-seed evidence on top
of a finished run and writes ``verify_seeds.json``; it is not a stage of ``run``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.export.files import write_json
from heterosearch.export.schema import read_run_file
from heterosearch.pipeline.files import ALLOCATION_FILE, VERIFY_FILE, check_current
from heterosearch.pipeline.folder import Run
from heterosearch.progress import say
from heterosearch.space.allocation import Allocation


def check_exported(run: Run, winner: Allocation) -> None:
    """Training reads search.json's winner and writes next to allocation.json: they must agree.

    After ``search DIR --budget B2`` the old allocation.json (and its PEFT config) describe
    another budget; training then would report one allocation and ship another.
    """
    from heterosearch.export.allocation_file import read_allocation

    path = run.path(ALLOCATION_FILE)
    if not path.is_file():
        raise UserError(f"{run.out} has no {ALLOCATION_FILE}: run `heterosearch export {run.out}` first")
    exported, data = read_allocation(path)
    check_current(run.out, "train", {ALLOCATION_FILE: data})
    if exported.to_dict() != winner.to_dict() or data.get("budget") != run.cfg.budget:
        raise UserError(
            f"{path} (budget {data.get('budget')}) is older than search.json (budget {run.cfg.budget}): "
            f"run `heterosearch export {run.out}` first, then train"
        )


def stage_verify(run: Run, winner: Allocation) -> dict[str, Any]:
    """The CLI's ``train`` stage: short-train the winner and the uniform baseline with the same seed, data order and schedule.

    Writes ``verify.json`` (the name run folders have always had); the multi-seed evidence is the
    ``verify`` command's (``heterosearch.verify``), not this stage's.
    """
    from heterosearch.train import train_allocation
    from heterosearch.train.parallel import Job, plan_jobs, run_jobs

    run.check_same_data()  # the models train on the data the run was scored and searched on
    path = run.path(VERIFY_FILE)
    done: dict[str, Any] = read_run_file(path, VERIFY_FILE) if path.is_file() else {}
    cfg = run.train_config()
    if done.get("train_config", cfg.to_dict()) != cfg.to_dict():
        done = {}  # `train RUN --lr ...`: another recipe, so both models train again
    done["train_config"] = cfg.to_dict()
    evals = {k: v for k, v in run.encoded.items() if k != "train"}
    baseline, baseline_name = run.baseline_allocation()
    models = {"winner": (winner, "searched allocation"), "baseline": (baseline, baseline_name)}
    todo = [label for label, (alloc, _) in models.items()
            if not (label in done and done[label].get("allocation") == alloc.to_dict())]

    def job(label: str) -> Job:
        alloc = models[label][0]
        return Job(label, cfg.steps_for(len(run.encoded["train"])), lambda on_step: train_allocation(
            run.new_model, run.tokenizer, run.all_sites, alloc, run.space.lora.scaling,
            run.encoded["train"], evals, run.spec, cfg, label=label, checkpoint=run.path("checkpoints") / f"{label}.pt",
            save_dir=run.out if label == "winner" else None, on_step=on_step,
        ))

    # On a CPU the two trainings run side by side, one process and half the threads each
    # (train/parallel.py: sooner than one after the other); elsewhere one after the other.
    parallel = plan_jobs(cfg.device, len(todo))
    if parallel > 1:
        say(f"training {' and '.join(todo)} side by side ({parallel} processes)")
    for start in range(0, len(todo), parallel):
        t0 = time.perf_counter()
        batch = todo[start : start + parallel]
        results = run_jobs([job(label) for label in batch], parallel)
        for label in batch:
            alloc, name = models[label]
            res = results[label]
            expected = alloc.params(run.site_map)
            if res.params != expected:
                raise AssertionError(f"{label}: instantiated {res.params} adapter parameters, budget formula says {expected}")
            done[label] = {
                "name": name,
                **res.metrics.get("test", {}),  # the report split at the top level; every split under "splits"
                **res.summary(),
                "resumed_from_step": res.resumed_from,
                "allocation": alloc.to_dict(),
            }
            if label == "winner":
                write_peft_native(run, alloc)
                _root_config_dropout(run)
            write_json(path, done)  # after each model, so a resumed run skips it
            run.timings[f"train_{label}"] = res.seconds
        if len(batch) > 1:
            run.timings["train_side_by_side"] = time.perf_counter() - t0  # wall time of the batch
        else:
            run.timings[f"train_{batch[0]}"] = time.perf_counter() - t0
    done["train_processes"] = parallel
    done["train_config"] = cfg.to_dict()
    done["split_roles"] = run.splits
    done["both_trivial"] = all(done[k].get("trivial", {}).get("test", False) for k in ("winner", "baseline"))
    from heterosearch.tasks._metrics import compare

    # Which is better on the report split, in the metric's own direction (a loss: lower).
    done["comparison"] = compare(run.spec.main_metric, "test", done["winner"], done["baseline"])
    write_json(path, done)
    return done


def write_peft_native(run: Run, winner: Allocation) -> Path | None:
    """RUN/adapter/: the trained LoRA-only winner as a folder plain PEFT loads (export/peft_native.py)."""
    from heterosearch.export.loader import load_adapters
    from heterosearch.export.peft_native import ADAPTER_DIR, public_model_id, save_peft_adapter

    if not winner.lora or winner.elements:
        return None  # banks, pools, shortcuts: heterosearch.load_adapters (no PEFT form)
    model = load_adapters(run.new_model(), run.out)
    return save_peft_adapter(model, winner, run.site_map, run.space.lora.scaling, run.path(ADAPTER_DIR),
                             base_model_id=public_model_id(run.cfg.model), task_type=run.peft_task_type,
                             lora_dropout=run.cfg.lora_dropout)


def _root_config_dropout(run: Run) -> None:
    """RUN/adapter_config.json (written by export) gets the dropout the winner trained with.

    ``train RUN --lora-dropout P`` changes the setting after export; PEFT users read the root
    config too, so it must not keep the export-time value.
    """
    from heterosearch.export.files import read_json

    path = run.path("adapter_config.json")
    if not path.is_file():
        return  # no LoRA part (banks, pools, shortcuts only)
    config = read_json(path)
    if config.get("lora_dropout") != run.cfg.lora_dropout:
        config["lora_dropout"] = run.cfg.lora_dropout
        write_json(path, config)
