"""Reuse finished trainings of another run folder instead of repeating them (``--reuse-from``).

A (method, seed) training is a deterministic function of the allocation, the seed, the training
recipe, the data and the base model. When another run folder (say the proxy-objective frontier)
already trained a baseline that a new folder (the train-objective frontier at the same budgets)
needs, retraining it costs minutes and yields the same numbers. ``reusable_runs`` returns the
other folder's finished entries, but only when everything that decides a training is equal:

- config.json: task, model, data_dir, the recipe (base lr, warm-up, batch size, max length, dropout,
  epochs, step cap, precision, device), the validation carve (fraction, seed) and the user-data
  options;
- the data files (sha256 of every split, not their paths) and the model (name and package or
  files), as config.json's provenance records them;
- verify_seeds.json's ``train_config`` (what the trainings actually used), but for the rate,
  which is matched per entry: a LoRA method's is the folder's (after ``recipe.lr_factor``, so
  ``lr_scaling`` itself need not match where it changes nothing), AdaLoRA's is its own
  (``recipe.adalora_lr``, recorded per entry), so AdaLoRA trainings survive a change of LoRA's rate.

Each entry is then matched by key (``method/seed``), allocation and planned parameters, so a
``random`` draw at another target or a winner that differs is trained afresh; a LoRA method
without such an entry takes another LoRA method's training of the same seed, allocation and
planned parameters (a winner that is a baseline's allocation: ``reused_entry``). A reused entry
keeps its metrics and says where it came from (``source``); its target and gap are recomputed
against this folder's winner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.export.schema import read_run_file

#: config.json settings that decide what a training computes (search-only settings are left out)
TRAINING_KEYS = ("task", "model", "data_dir", "train_epochs", "max_train_steps", "batch_size", "max_length", "lr", "warmup",
                 "lora_dropout", "val_fraction", "split_seed", "device", "precision", "text_columns", "label_column", "problem")
#: entry fields recomputed against this folder's winner, not copied
_RECOMPUTED = ("target", "gap")
#: entry fields that name the plan, not the training: a training taken under another method's key gets this folder's
_IDENTITY = ("method", "seed", "name", "allocation", "planned_params")


def _data_identity(record: dict[str, Any] | None) -> Any:
    """The data provenance without file paths: split name -> (sha256, examples)."""
    if not isinstance(record, dict):
        return None
    splits = record.get("splits") or {}
    return {k: (v.get("sha256"), v.get("examples")) for k, v in sorted(splits.items()) if isinstance(v, dict)}


def _model_identity(record: dict[str, Any] | None) -> Any:
    """The model provenance without its local path."""
    if not isinstance(record, dict):
        return None
    return {k: v for k, v in record.items() if k != "path"}


def _mismatch(ours: Path, other: Path, train_config: dict[str, Any]) -> str | None:
    """Why ``other``'s trainings are not those ``ours`` would run, or None when they are."""
    from heterosearch.pipeline.files import CONFIG_FILE, VERIFY_SEEDS_FILE

    mine, theirs = read_run_file(ours / CONFIG_FILE, CONFIG_FILE), read_run_file(other / CONFIG_FILE, CONFIG_FILE)
    differ = [k for k in TRAINING_KEYS if mine["config"].get(k) != theirs["config"].get(k)]
    if differ:
        return "settings differ: " + ", ".join(differ)
    if _data_identity(mine.get("data")) != _data_identity(theirs.get("data")):
        return "its data files differ (sha256)"
    if _model_identity(mine.get("model")) != _model_identity(theirs.get("model")):
        return "its base model differs"
    state = read_run_file(other / VERIFY_SEEDS_FILE, VERIFY_SEEDS_FILE)
    if _without_lr(state.get("train_config")) != _without_lr(train_config):
        return "its trainings used another training config"
    return None


def _without_lr(train_config: Any) -> Any:
    return {k: v for k, v in train_config.items() if k != "lr"} if isinstance(train_config, dict) else train_config


def _same_rate(entry: dict[str, Any], theirs: dict[str, Any], ours: dict[str, Any], adalora_lr: float | None) -> bool:
    """Whether ``entry`` trained at the rate this folder would use: AdaLoRA records its own rate
    (``recipe.adalora_lr``, not scaled with the budget's rank), every LoRA method the folder's."""
    if entry.get("method") == "adalora":
        return adalora_lr is not None and entry.get("lr") is not None and math.isclose(entry["lr"], adalora_lr, rel_tol=1e-12)
    return theirs.get("lr") == ours.get("lr")


def reusable_runs(ours: Path, others: Sequence[Path | str], train_config: dict[str, Any],
                  adalora_lr: float | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Finished entries (``method/seed`` -> entry with ``source``) of ``others`` that ``ours`` may take.

    ``train_config`` is what this folder's LoRA methods train with; ``adalora_lr`` AdaLoRA's rate
    (None: no AdaLoRA entry is taken). A folder whose LoRA rate differs (another ``recipe.lr_factor``)
    can still give its AdaLoRA trainings, which do not depend on it.

    Returns (entries, refused): ``refused`` maps a folder to why none of its runs can be reused.
    The first folder that has a key wins.
    """
    from heterosearch.pipeline.files import CONFIG_FILE, VERIFY_SEEDS_FILE

    entries: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    for other in map(Path, others):
        if not (other / CONFIG_FILE).is_file():
            raise UserError(f"--reuse-from {other} is not a heterosearch run folder (no {CONFIG_FILE})")
        if other.resolve() == Path(ours).resolve():
            continue
        if not (other / VERIFY_SEEDS_FILE).is_file():
            refused[str(other)] = f"it has no {VERIFY_SEEDS_FILE}"
            continue
        why = _mismatch(Path(ours), other, train_config)
        if why:
            refused[str(other)] = why
            continue
        state = read_run_file(other / VERIFY_SEEDS_FILE, VERIFY_SEEDS_FILE)
        for key, entry in state.get("runs", {}).items():
            if key not in entries and isinstance(entry, dict) and "splits" in entry \
                    and _same_rate(entry, state.get("train_config") or {}, train_config, adalora_lr):
                kept = {k: v for k, v in entry.items() if k not in _RECOMPUTED}
                kept["source"] = f"{other / VERIFY_SEEDS_FILE}"
                entries[key] = kept
    return entries, refused


def reused_entry(entries: dict[str, dict[str, Any]], key: str, allocation: dict[str, Any] | None, planned_params: int) -> dict[str, Any] | None:
    """The reusable entry for ``key`` (``method/seed``) if it trained this very plan; else, for a
    LoRA plan, another LoRA method's entry of the same seed, allocation and planned parameters;
    else None.

    Why another method's entry counts: a LoRA method's verify training is ``train_allocation`` of
    the allocation with the seed's model, data order and recipe (``evidence/jobs.py``), so its
    name changes nothing it computes. A search whose winner is a baseline's allocation (a
    warm-started objective that picks uniform LoRA on all sites) then takes that baseline's
    trainings instead of repeating them. The entry is taken under this key's name (its identity
    fields are this plan's, ``record`` in ``evidence/seeds.py``) and its ``source`` says whose
    training it was. AdaLoRA (no allocation) is matched by key only.
    """
    entry = entries.get(key)
    if entry is not None and entry.get("allocation") == allocation and entry.get("planned_params") == planned_params:
        return entry
    if allocation is None:
        return None
    seed = key.rpartition("/")[2]
    for other_key, other in entries.items():
        if other.get("method") != "adalora" and str(other.get("seed")) == seed and other.get("allocation") == allocation \
                and other.get("planned_params") == planned_params:
            kept = {k: v for k, v in other.items() if k not in _IDENTITY}
            kept["source"] = f"{other['source']} ({other_key})"
            return kept
    return None
