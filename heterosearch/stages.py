"""What each stage of a run folder reads and writes, and the check that its inputs are current.

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


@dataclass(frozen=True)
class Stage:
    name: str  # the CLI command that runs it
    reads: tuple[str, ...]
    writes: tuple[str, ...]


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("score", reads=(), writes=("scores.json",)),
        Stage("search", reads=("scores.json",), writes=("search.json", "study.journal")),
        Stage("export", reads=("search.json",), writes=("allocation.json", "adapter_config.json")),
        Stage("train", reads=("search.json", "allocation.json"),
              writes=("verify.json", "adapter_model.safetensors", "results.json", "report.md")),
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
