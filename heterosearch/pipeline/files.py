"""The run folder's files: what each stage reads and writes, and the check that its inputs are current.

Stage names are the CLI's stage commands. The ``train`` stage (``stage_verify`` in
``pipeline/train_stage.py``) writes ``verify.json``: the one-seed check of the winner against the
uniform baseline. The ``verify`` command (``heterosearch.verify``) is not a stage of a run: it
adds ``verify_seeds.json``, the multi-seed evidence, to a finished run folder.

Every file a stage writes records the sha256 of the files it was made from (``"inputs"``).
Before a stage runs, each of its inputs is checked against the files *it* was made from: an
``allocation.json`` whose recorded ``search.json`` hash differs from today's ``search.json``
was exported from an earlier search, and training it would report one allocation and ship
another. The check refuses with one line naming the stage to rerun. Hashes, not
modification times: a copied or restored folder keeps its meaning, and a rerun that
rewrites identical content is not "newer".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError

CONFIG_FILE = "config.json"
SCORES_FILE = "scores.json"
SEARCH_FILE = "search.json"
ALLOCATION_FILE = "allocation.json"
VERIFY_FILE = "verify.json"  # written by the `train` stage (stage_verify): one seed, winner vs baseline
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
STUDY_FILE = "study.journal"
VERIFY_SEEDS_FILE = "verify_seeds.json"  # written by the `verify` command (heterosearch.verify), not by a stage


@dataclass(frozen=True)
class Stage:
    name: str  # the CLI command that runs it
    reads: tuple[str, ...]
    writes: tuple[str, ...]


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("score", reads=(), writes=(SCORES_FILE,)),
        Stage("search", reads=(SCORES_FILE,), writes=(SEARCH_FILE, STUDY_FILE)),
        Stage("export", reads=(SEARCH_FILE,), writes=(ALLOCATION_FILE, "adapter_config.json")),
        Stage("train", reads=(SEARCH_FILE, ALLOCATION_FILE),
              writes=(VERIFY_FILE, "adapter_model.safetensors", RESULTS_FILE, REPORT_FILE)),
    )
}
#: The stage that writes each file (the fix a stale-input message names).
WRITER = {f: s.name for s in STAGES.values() for f in s.writes}
INPUTS_KEY = "inputs"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_hashes(run_dir: Path, stage: str) -> dict[str, str]:
    """``{file: sha256}`` of the stage's inputs as they are now: stored in what the stage writes."""
    run_dir = Path(run_dir)
    return {name: sha256(run_dir / name) for name in STAGES[stage].reads if (run_dir / name).is_file()}


def check_current(run_dir: Path, stage: str, documents: dict[str, Any]) -> None:
    """Refuse when an input of ``stage`` was made from files that have changed since.

    ``documents``: the parsed JSON inputs of the stage (file name -> dict). An input without
    recorded hashes (a folder from before this check) is accepted as it is.
    """
    run_dir = Path(run_dir)
    for name in STAGES[stage].reads:
        doc = documents.get(name)
        recorded = doc.get(INPUTS_KEY) if isinstance(doc, dict) else None
        if not isinstance(recorded, dict):
            continue
        for source, digest in recorded.items():
            if source not in WRITER:  # only run-folder files by name: never a path out of the folder
                continue
            path = run_dir / source
            if not path.is_file() or sha256(path) != digest:
                fix = WRITER.get(name, "run")
                raise UserError(
                    f"{run_dir / name} was made from another {source} than the one in the folder now: "
                    f"rerun `heterosearch {fix} {run_dir}` first, then `heterosearch {stage} {run_dir}`"
                )


# -- stale files: a rerun stage removes what was made from its old output ----------------------
_TRAINED = (VERIFY_FILE, "adapter_model.safetensors", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
            "checkpoints/*.pt")
_REPORTED = (RESULTS_FILE, REPORT_FILE, "plots/*.png")
#: What depends on each stage's output (score -> search -> export -> train -> report). ``verify_seeds.json``
#: (the ``verify`` command) trains the searched winner and baselines at its budget, so it depends on the search.
LATER: dict[str, tuple[str, ...]] = {
    "score": (SEARCH_FILE, ALLOCATION_FILE, "adapter_config.json", *_TRAINED, VERIFY_SEEDS_FILE, *_REPORTED),
    "search": (ALLOCATION_FILE, "adapter_config.json", *_TRAINED, VERIFY_SEEDS_FILE, *_REPORTED),
    "export": (*_TRAINED, VERIFY_SEEDS_FILE, *_REPORTED),
    "train": _REPORTED,
}


def remove_stale(run_dir: Path, stage: str) -> list[str]:
    """Delete the files that depend on ``stage``'s output (its output changed); returns their relative paths.

    Only files heterosearch writes (``run_folder.OWNED``), by name, in a folder that is
    heterosearch's own; never a symlink, never anything else.
    """
    from heterosearch import run_folder

    run_dir = Path(run_dir)
    if not run_folder.is_ours(run_dir):
        return []
    removed: list[str] = []
    for pattern in LATER[stage]:
        for path in sorted(run_dir.glob(pattern)):
            rel = path.relative_to(run_dir).as_posix()
            if path.is_symlink() or not path.is_file() or not run_folder.owned_name(rel):
                continue
            path.unlink()
            removed.append(rel)
    for sub in run_folder.OWNED_DIRS:  # a sub-folder heterosearch made and just emptied goes too
        d = run_dir / sub
        if removed and d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
            d.rmdir()
    return removed
