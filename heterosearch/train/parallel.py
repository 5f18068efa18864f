"""Train independent models side by side on a CPU: one forked process per model, a share of the threads each.

Why: a MiniLM-sized training does not keep two cores busy (its matrices are small, so intra-op
threads wait on each other; 185 % CPU for one training on 2 cores, reports/mrpc-default-0.5M),
and the run's ``train`` stage has two independent trainings, the winner and the baseline. Run
side by side with one thread each they finish sooner than one after the other with two
(``reports/mrpc-default-0.5M/README.md`` has the measured times). On a GPU, or with one
thread, nothing changes: the trainings run in this process, in order.

The children are forked, so they share the parent's model factory, tokenizer and encoded data
without pickling, and each writes its own checkpoint: a killed run resumes each model where it
stopped. A child returns its ``TrainResult`` through a pipe; a ``UserError`` in a child is
re-raised as one in the parent (one line, exit 2), any other failure as a RuntimeError with the
child's traceback.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from heterosearch.errors import UserError
from heterosearch.progress import bars_wanted, progress_bar, say

#: ``HETEROSEARCH_TRAIN_JOBS=1`` turns side-by-side training off (e.g. to time one training alone).
JOBS_ENV = "HETEROSEARCH_TRAIN_JOBS"


@dataclass
class Job:
    """One training: ``run(on_step)`` trains and returns its result, calling ``on_step(done)`` per step."""

    label: str
    steps: int
    run: Callable[[Callable[[int], None] | None], Any]


def plan_jobs(device: str, n_models: int) -> int:
    """How many trainings to run at once: the CPU's threads split between models, else 1."""
    import torch

    env = os.environ.get(JOBS_ENV, "").strip()
    if env:
        try:
            wanted = int(env)
        except ValueError:
            raise UserError(f"{JOBS_ENV}={env!r} is not a whole number") from None
        if wanted < 1:
            raise UserError(f"{JOBS_ENV}={env!r} must be at least 1")
    else:
        wanted = n_models
    if not str(device).startswith("cpu") or "fork" not in mp.get_all_start_methods():
        return 1
    return max(1, min(wanted, n_models, torch.get_num_threads()))


def run_jobs(jobs: Sequence[Job], parallel: int) -> dict[str, Any]:
    """Run ``jobs``, ``parallel`` at a time in forked processes (1 = in this process, in order)."""
    if parallel <= 1 or len(jobs) <= 1:
        return {job.label: job.run(None) for job in jobs}
    import torch

    threads = max(1, torch.get_num_threads() // parallel)
    results: dict[str, Any] = {}
    for start in range(0, len(jobs), parallel):
        results.update(_run_batch(jobs[start : start + parallel], threads))
    return results


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel sends SIGTERM to this child when its parent dies (a killed run leaves no
    orphan training that would keep writing the checkpoint the resumed run reads)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux: the parent's finally still terminates children
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child(job: Job, conn: Any, counter: Any, threads: int, parent: int) -> None:
    import torch

    _die_with_parent(parent)
    torch.set_num_threads(threads)
    os.environ["HETEROSEARCH_QUIET"] = "1"  # the parent draws one progress display for all children

    def on_step(done: int) -> None:
        counter.value = done

    try:
        conn.send(("ok", job.run(on_step)))
    except UserError as exc:
        conn.send(("user", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent, which raises
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def _run_batch(jobs: Sequence[Job], threads: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    running = []
    for job in jobs:
        parent_end, child_end = ctx.Pipe(duplex=False)
        counter = ctx.Value("i", 0)
        proc = ctx.Process(target=_child, args=(job, child_end, counter, threads, os.getpid()), name=f"train-{job.label}", daemon=True)
        proc.start()
        child_end.close()
        running.append((job, proc, parent_end, counter))
    try:
        _wait(running)
        results: dict[str, Any] = {}
        for job, proc, conn, _ in running:
            message = conn.recv() if conn.poll() else ("error", f"the process exited with code {proc.exitcode}")
            proc.join()
            kind, payload = message
            if kind == "user":
                raise UserError(payload)
            if kind == "error":
                raise RuntimeError(f"training {job.label} failed in its process: {payload}")
            results[job.label] = payload
        return results
    finally:
        for _, proc, conn, _ in running:
            if proc.is_alive():  # interrupted: children stop too (their checkpoints let a rerun resume)
                proc.terminate()
                proc.join()
            conn.close()


def _wait(running: list[Any]) -> None:
    """Until every child has sent its result or died; a progress bar per child on a terminal."""

    def pending() -> bool:
        return any(proc.is_alive() and not conn.poll() for _, proc, conn, _ in running)

    if not bars_wanted():  # quiet, or a file or a pipe: no bar drawn into a log
        t0 = time.perf_counter()
        while pending():
            time.sleep(0.5)
        say(f"trained {', '.join(job.label for job, *_ in running)} side by side in {time.perf_counter() - t0:.0f}s")
        return
    with progress_bar() as bar:
        tasks = [bar.add_task(f"train {job.label} (own process)", total=job.steps) for job, *_ in running]
        while True:
            for task, (_, _, _, counter) in zip(tasks, running):
                bar.update(task, completed=counter.value)
            if not pending():
                break
            time.sleep(0.5)
