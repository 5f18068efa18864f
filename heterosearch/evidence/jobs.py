"""The trainings of ``verify``, ``frontier`` and ``rank-report`` as jobs that any process can take.

Every (method, seed) training of ``verify`` (and every (sample, seed) training of
``rank-report``) is a job in a queue (``optimize/jobqueue.py``: an Optuna study next to the
search's, in the same storage: the run folder's ``study.journal`` or its postgresql:// URL).
A job's spec records everything needed to run it without the run folder: the run's settings
(model, data, space, split: what builds the same encoded data and sites), the allocation
(or AdaLoRA's plan), the training recipe with its seed, the evaluation splits and a
checkpoint path inside the run folder (used when the worker sees that folder, so a retried
job resumes there). A training is a pure function of its spec (seeded data order, head and
adapter initialisation), so where it runs does not change its numbers.

The process that started the command is the coordinator (``run_jobs``): it submits the jobs
it still needs, takes jobs itself, and collects every result from the storage (its own too,
so one path serves one process or many) in the order it submitted them; the command then
writes the same files as before. ``heterosearch worker FOLDER --jobs`` processes (``work``)
take jobs from the same storage until the coordinator is done. Model, data and space paths
must be valid on the worker's machine (paths are made absolute in the spec).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.optimize.jobqueue import ERROR, RESULT, SUFFIX, JobQueue, canonical, queue_names
from heterosearch.progress import say

POLL_SECONDS = 0.5  # how often an idle process looks for jobs and results


# -- where a run's queue lives ------------------------------------------------------------------------
def storage_of(folder: Path | None) -> str:
    """The storage a run (or frontier) folder uses: its config's URL, else its ``study.journal``."""
    from heterosearch.pipeline.files import CONFIG_FILE, STUDY_FILE

    if folder is None:
        raise UserError("pass a run folder or --storage (a postgresql:// URL or a journal file)")
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder (pass a run or frontier folder, or --storage)")
    if (folder / CONFIG_FILE).is_file():
        from heterosearch.pipeline.folder import stored_config

        url = stored_config(folder).storage
        if url is not None:
            return url
    return str(folder / STUDY_FILE)


def queue_name(folder: Path, storage: str) -> str:
    from heterosearch.optimize.storage import default_study_name, is_url

    return default_study_name(folder, storage if is_url(storage) else None) + SUFFIX


def open_queue(folder: Path, fresh: bool = False) -> JobQueue:
    """The job queue of a run or frontier folder (created if needed; emptied first if ``fresh``)."""
    from heterosearch.optimize.storage import delete_study

    storage = storage_of(folder)
    if fresh:
        delete_study(storage, queue_name(folder, storage))
    return JobQueue(storage, queue_name(folder, storage))


# -- specs --------------------------------------------------------------------------------------------
def portable_config(cfg: Any) -> dict[str, Any]:
    """The run's settings a worker needs, with local paths made absolute (no output folder, no storage URL)."""
    d = cfg.to_dict()
    d.pop("out", None)
    d.pop("storage", None)  # not needed to train, and a URL may hold a password
    for name, is_path in (("model", Path.is_dir), ("data_dir", Path.is_dir), ("space", Path.is_file)):
        if d.get(name) is not None and is_path(Path(d[name])):
            d[name] = str(Path(d[name]).resolve())
    return d


def verify_spec(run: Any, plan: Any, seed: int, cfg: Any, evals: list[str]) -> dict[str, Any]:
    """One (method, seed) training of ``verify``; ``cfg`` is the recipe with this seed."""
    return {
        "kind": "verify",
        "run": portable_config(run.cfg),
        "run_dir": str(Path(run.out).resolve()),
        "checkpoint": f"checkpoints/verify-{plan.method}-s{seed}.pt",
        "method": plan.method,
        "seed": int(seed),
        "allocation": plan.allocation.to_dict() if plan.allocation is not None else None,
        "planned_params": plan.params,
        "adalora": {k: plan.details[k] for k in ("target_r", "init_r")} if plan.method == "adalora" else None,
        "train": cfg.to_dict(),
        "label": f"{plan.method} s{seed}",
        "evals": list(evals),
    }


def sample_spec(run: Any, allocation: Any, cfg: Any, label: str) -> dict[str, Any]:
    """One (sample, seed) training of ``rank-report``, evaluated on the validation split."""
    return {
        "kind": "sample",
        "run": portable_config(run.cfg),
        "allocation": allocation.to_dict(),
        "train": cfg.to_dict(),
        "label": label,
        "evals": ["val"],  # a calibration is a choice: it uses the validation split
    }


# -- running one job ----------------------------------------------------------------------------------
class Inputs:
    """Loaded run inputs (model path, tokenizer, sites, encoded data) per run settings, reused across jobs."""

    def __init__(self) -> None:
        self._runs: dict[str, Any] = {}

    def add(self, run: Any) -> None:
        self._runs[canonical(portable_config(run.cfg))] = run

    def get(self, settings: Mapping[str, Any]) -> Any:
        key = canonical(settings)
        if key not in self._runs:
            from heterosearch.pipeline.config import RunConfig
            from heterosearch.pipeline.inputs import RunInputs

            d = dict(settings)
            d["proxies"] = tuple(d.get("proxies", ()))
            inputs = RunInputs(cfg=RunConfig(**d))
            inputs.tokenizer  # noqa: B018  (bad paths fail here, before a job is taken)
            inputs.drop_spare_model()
            inputs.encoded  # noqa: B018
            self._runs[key] = inputs
        return self._runs[key]


def execute(spec: Mapping[str, Any], inputs: Inputs) -> dict[str, Any]:
    """Run one job; its result is what the command records for that training."""
    from heterosearch.pipeline.config import resolve_device_name
    from heterosearch.space.allocation import Allocation
    from heterosearch.train.config import TrainConfig

    run = inputs.get(spec["run"])
    cfg = TrainConfig(**spec["train"], device=str(resolve_device_name(run.cfg.device)))
    evals = {k: run.encoded[k] for k in spec["evals"]}
    alloc = Allocation.from_dict(spec["allocation"]) if spec["allocation"] is not None else None
    if spec["kind"] == "verify":
        folder = Path(spec["run_dir"])
        checkpoint = folder / spec["checkpoint"] if folder.is_dir() else None  # a worker elsewhere trains without one
        return train_verify(run, spec["method"], alloc, spec["planned_params"], spec["adalora"], cfg, evals,
                            spec["label"], checkpoint)
    if spec["kind"] == "sample":
        from heterosearch.train import train_allocation

        assert alloc is not None
        t0 = time.perf_counter()
        res = train_allocation(model_factory(run, cfg.seed), run.tokenizer, run.all_sites, alloc, run.space.lora.scaling,
                               run.encoded["train"], evals, run.spec, cfg, label=spec["label"])
        return {"metrics": res.metrics["val"], "eval_loss": res.eval_loss.get("val"), "steps": res.steps,
                "train_loss": res.train_loss, "seconds": time.perf_counter() - t0}
    raise UserError(f"unknown job kind {spec['kind']!r} (a job queued by a newer heterosearch?)")


def train_verify(run: Any, method: str, alloc: Any, planned: int, adalora: Mapping[str, int] | None, cfg: Any,
                 evals: Mapping[str, Any], label: str, checkpoint: Path | None) -> dict[str, Any]:
    """One (method, seed) training of ``verify`` (``cfg`` carries the seed)."""
    from dataclasses import replace

    from heterosearch.train import train_allocation

    factory = model_factory(run, cfg.seed)
    if method == "adalora":
        from heterosearch import recipe
        from heterosearch.evidence.adalora import train_adalora

        assert adalora is not None
        # AdaLoRA's own recipe: its adapters start as P diag(E) Q with E = 0 and its rank
        # schedule prunes mid-training, so it needs a larger step than LoRA (recipe.py): the
        # run's base rate times the factor, not scaled with the budget's rank like LoRA's.
        cfg = replace(cfg, lr=recipe.adalora_lr(run.cfg.lr))
        res = train_adalora(
            factory, run.tokenizer, run.sites, adalora["target_r"], adalora["init_r"], run.space.lora.scaling,
            run.encoded["train"], evals, run.spec, cfg, label=label,
        )
        return {
            "params": res.params,
            "params_lora_equivalent": res.params_lora_equivalent,
            "params_allocated": res.params_allocated,
            "target_r": res.target_r,
            "init_r": res.init_r,
            "final_ranks": res.final_ranks,
            "adalora_schedule": res.schedule,
            "lr": cfg.lr,
            "head_params": res.head_params,
            "splits": res.metrics,
            "eval_loss": res.eval_loss,
            "trivial": res.trivial,
            "steps": res.steps,
            "train_loss": res.train_loss,
            "seconds": res.seconds,
            "tokens_per_second": res.tokens_per_second,
            "source": "trained",
        }
    assert alloc is not None
    res = train_allocation(factory, run.tokenizer, run.all_sites, alloc, run.space.lora.scaling,
                           run.encoded["train"], evals, run.spec, cfg, label=label, checkpoint=checkpoint)
    if res.params != planned:
        raise AssertionError(f"{label}: instantiated {res.params} adapter parameters, budget formula says {planned}")
    return {**res.summary(), "source": "trained"}


# -- the coordinator ----------------------------------------------------------------------------------
def run_jobs(queue: JobQueue, jobs: Mapping[str, dict[str, Any]], on_result: Callable[[str, dict[str, Any], float], None],
             inputs: Inputs, poll: float = POLL_SECONDS, executor: Callable[..., dict[str, Any]] | None = None) -> None:
    """Submit ``jobs`` (key -> spec), take them alongside any workers, and hand each result to ``on_result``.

    ``on_result(key, result, seconds)`` is called once per key, as results arrive. A job whose
    code raised (here or on a worker) ends the command with that error. ``executor(spec, inputs)``
    runs a job here (default ``execute``; tests pass a cheap one).
    """
    from optuna.trial import TrialState

    if not jobs:
        return
    want = {k: canonical(s) for k, s in jobs.items()}
    queue.set_closed(False)
    queue.submit(dict(jobs))
    done: set[str] = set()
    while True:
        queue.reap()
        for key, trials in queue.by_key().items():
            if key not in want or key in done:
                continue
            mine = [t for t in trials if canonical(t.user_attrs.get("job.spec")) == want[key]]
            complete = [t for t in mine if t.state == TrialState.COMPLETE]
            if complete:
                done.add(key)
                on_result(key, complete[0].user_attrs[RESULT], float(complete[0].value or 0.0))
            elif mine and not any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in mine):
                _dead_end(queue, key, jobs[key], mine)
        if len(done) == len(want):
            return
        job = queue.claim(accept=lambda k, s: k in want and k not in done and canonical(s) == want[k])
        if job is not None:
            queue.run(job, lambda spec: (executor or execute)(spec, inputs))
        else:
            time.sleep(poll)


def _dead_end(queue: JobQueue, key: str, spec: dict[str, Any], trials: list[Any]) -> None:
    """Every trial of ``key`` failed: report an error, or enqueue again if the retry never appeared."""
    import datetime

    errors = [t.user_attrs[ERROR] for t in trials if t.user_attrs.get(ERROR)]
    if errors:
        raise UserError(f"training job {key} failed: {errors[-1]}")
    # The process that failed a dead worker's job enqueues its retry right after; if that
    # process died in between, the job would wait forever: enqueue it here after a grace period.
    last = max((t.datetime_complete for t in trials if t.datetime_complete is not None), default=None)
    if last is None or (datetime.datetime.now() - last).total_seconds() > 3 * queue.heartbeat:
        queue.enqueue(key, spec, attempt=len(trials) + 1)


# -- a worker -----------------------------------------------------------------------------------------
@dataclass
class JobsResult:
    ran: int  # jobs this worker ran to completion
    failed: int  # jobs whose training raised here
    queues: list[str]


def work(storage: str, study: str | None = None, wait: float = 0.0, heartbeat: int | None = None,
         poll: float = POLL_SECONDS) -> JobsResult:
    """Take training jobs from the queues in ``storage`` (or only ``study``) until there is nothing left.

    Stops when every queue it joined is closed (its command finished) with nothing waiting
    or running, or after ``wait`` seconds without a job to take (``wait`` also covers the
    time before the first queue appears).
    """
    from optuna.trial import TrialState

    from heterosearch.optimize.storage import HEARTBEAT_INTERVAL, describe, open_storage

    hb = heartbeat if heartbeat is not None else HEARTBEAT_INTERVAL
    backend = open_storage(storage, heartbeat=hb)
    inputs = Inputs()
    queues: dict[str, JobQueue] = {}
    seen_open = False
    ran = failed = 0
    idle_since = time.monotonic()

    def accept(key: str, spec: dict[str, Any]) -> bool:
        inputs.get(spec["run"])  # load (or fail with one line) before the job is taken
        return True

    while True:
        names = queue_names(backend)
        for name in names if study is None else [n for n in names if n == study]:
            if name not in queues:
                queues[name] = JobQueue(storage, name, heartbeat=hb, backend=backend)
                queues[name].join()
                say(f"worker: joined job queue {name!r} on {describe(storage)}")
        job = None
        for q in queues.values():
            q.reap()
            job = q.claim(accept=accept)
            if job is not None:
                try:
                    q.run(job, lambda spec: execute(spec, inputs))
                    ran += 1
                except Exception as exc:  # recorded on the job; the coordinator reports it
                    failed += 1
                    say(f"[red]worker: job {job.key} failed: {type(exc).__name__}: {exc}[/red]")
                break
        if job is not None:
            idle_since = time.monotonic()
            continue
        states = [(q.is_closed(), q.trials((TrialState.WAITING, TrialState.RUNNING))) for q in queues.values()]
        seen_open = seen_open or any(not closed for closed, _ in states)
        finished = bool(queues) and all(closed and not active for closed, active in states)
        if finished and (seen_open or ran):
            break
        if time.monotonic() - idle_since >= wait:
            if not queues:
                where = describe(storage)
                raise UserError(f"no job queue{f' {study!r}' if study else ''} in {where} yet: start `heterosearch verify` "
                                "(or rank-report, frontier) on that run first, or pass --wait SECONDS")
            break
        time.sleep(poll)
    return JobsResult(ran=ran, failed=failed, queues=sorted(queues))


def model_factory(run: Any, seed: int) -> Any:
    """A fresh base model whose head is initialised from ``seed`` (``RunInputs.new_model``)."""

    def make() -> Any:
        return run.new_model(seed)

    return make
