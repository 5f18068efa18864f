"""Selection data apart from report data: a validation split carved from train.

The held-out protocol every results file follows:

- ``train``: the task's training file minus the validation examples; adapters, heads and
  proxies only ever see it;
- ``val``: ``fraction`` of the training file, seeded by ``split_seed`` and stratified by
  label for classification (regression: a plain seeded draw). Every choice the tool makes
  (recipe sweeps, training-based search objectives, proxy calibration) is made on it;
- ``test``: the GLUE dev file, used only for the final report. GLUE's own test labels are
  private, so GLUE dev *is* the test split here, and it is called that everywhere.

``split_seed`` is separate from the training seed on purpose: a multi-seed comparison varies
data order and init, while every seed is selected on the same validation examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from heterosearch.errors import UserError
from heterosearch.tasks._loading import Split

#: What each split is for; copied into every results file that reports a number from it.
SPLIT_ROLES = {
    "train": "fitting: the training file minus the validation examples",
    "val": "selection: carved from the training file (seeded, stratified for classification); "
    "every choice the tool makes uses it",
    "test": "report only: the GLUE dev file (GLUE test labels are private), never used for a choice",
}
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Carved:
    """The train file cut in two, plus the indices (into the original file) of each part."""

    train: Split
    val: Split
    train_index: list[int]
    val_index: list[int]

    def describe(self, fraction: float, split_seed: int, stratified: bool) -> dict[str, Any]:
        return {
            "val_fraction": fraction,
            "split_seed": split_seed,
            "stratified": stratified,
            "train_examples": len(self.train),
            "val_examples": len(self.val),
        }


def carve_validation(train: Split, fraction: float, split_seed: int, classification: bool) -> Carved:
    """Split ``train`` into (fit, val): ``round(fraction * n)`` validation examples.

    Stratified (classification): each label contributes ``round(fraction * n_label)``
    examples, so the validation split has the training file's label balance. Indices are
    drawn by ``numpy.random.default_rng([split_seed, 0x5A11])`` and kept in file order, so
    the split is a pure function of (file, fraction, split_seed).
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--val-fraction must be in (0, 1), got {fraction}")
    if train.labels is None:
        raise UserError(f"{train.source}: the training split has no labels, so no validation split can be carved")
    n = len(train)
    rng = np.random.default_rng([split_seed, 0x5A11])
    labels = np.asarray(train.labels)
    if classification:
        picked: list[int] = []
        for value in np.unique(labels):
            members = np.flatnonzero(labels == value)
            k = int(round(fraction * len(members)))
            picked.extend(int(i) for i in rng.choice(members, size=k, replace=False))
    else:
        k = int(round(fraction * n))
        picked = [int(i) for i in rng.choice(n, size=k, replace=False)]
    val_set = set(picked)
    if not val_set or len(val_set) == n:
        raise UserError(
            f"{train.source}: {n} training examples cannot be split with --val-fraction {fraction} "
            "(the validation or the training part would be empty)"
        )
    val_index = sorted(val_set)
    train_index = [i for i in range(n) if i not in val_set]

    def take(index: list[int], name: str) -> Split:
        return Split(
            texts=[train.texts[i] for i in index],
            labels=[train.labels[i] for i in index],  # type: ignore[index]
            source=f"{train.source}[{name}]",
        )

    return Carved(take(train_index, "train"), take(val_index, "val"), train_index, val_index)
