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


def carve_validation(train: Split, fraction: float, split_seed: int, classification: bool, salt: int = 0x5A11,
                     name: str = "val") -> Carved:
    """Split ``train`` into (fit, val): ``round(fraction * n)`` validation examples.

    Stratified (classification): each label contributes ``round(fraction * n_label)``
    examples, so the validation split has the training file's label balance. Indices are
    drawn by ``numpy.random.default_rng([split_seed, 0x5A11])`` and kept in file order, so
    the split is a pure function of (file, fraction, split_seed).
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--val-fraction must be in (0, 1), got {fraction}")
    if train.labels is None and classification:
        raise UserError(f"{train.source}: the training split has no labels, so no validation split can be carved")
    n = len(train)
    rng = np.random.default_rng([split_seed, salt])
    labels = np.asarray(train.labels if train.labels is not None else [])
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

    def take(index: list[int], part: str) -> Split:
        return Split(
            texts=[train.texts[i] for i in index],
            labels=None if train.labels is None else [train.labels[i] for i in index],  # type: ignore[index]
            source=f"{train.source}[{part}]",
        )

    return Carved(take(train_index, "train"), take(val_index, name), train_index, val_index)


#: The salt of the test split carved from a training file when a user's data has no test/dev file:
#: another random stream than the validation split's, which is then carved from what is left.
TEST_SALT = 0x7E57


@dataclass(frozen=True)
class HeldOut:
    """The three splits a run uses: ``train`` (fit), ``val`` (selection), ``test`` (report), and what each is."""

    train: Split
    val: Split
    test: Split
    info: dict[str, Any]


def held_out(data: Any, fraction: float, split_seed: int, classification: bool) -> HeldOut:
    """Cut a task's files into train / val / test (``TaskData``; the module docstring's protocol).

    GLUE: val carved from train, test = the dev file (as always). A user's data: a given
    validation file is val (nothing carved), else val is carved from train; a given test/dev file
    is test, else test is carved from train first (salt ``TEST_SALT``, the same fraction, seeded,
    stratified for classification) and val from the rest. ``info`` says which is which.
    """
    train, test = data.train, data.dev
    info: dict[str, Any] = {}
    if test is None:
        cut = carve_validation(train, fraction, split_seed, classification, salt=TEST_SALT, name="test")
        train, test = cut.train, cut.val
        info["test_carved"] = {"examples": len(test), "fraction": fraction, "split_seed": split_seed,
                               "stratified": classification}
    if data.val is None:
        carved = carve_validation(train, fraction, split_seed, classification)
        fit, val = carved.train, carved.val
        info.update(carved.describe(fraction, split_seed, classification))
    else:
        fit, val = train, data.val
        info.update({"val_fraction": None, "split_seed": split_seed, "stratified": False,
                     "train_examples": len(fit), "val_examples": len(val), "val_file": val.source})
    if getattr(data.spec, "kind", "glue") == "glue":
        roles, test_from = dict(SPLIT_ROLES), "GLUE dev"
    else:
        roles = {
            "train": "fitting: the training file minus the held-out examples",
            "val": (f"selection: the validation file {data.val.source}" if data.val is not None else
                    "selection: carved from the training file (seeded, stratified for classification)")
            + "; every choice the tool makes uses it",
            "test": (f"report only: the test/dev file {data.dev.source}" if data.dev is not None else
                     "report only: carved from the training file because no test/dev file was given (seeded, "
                     "stratified for classification, carved before the validation split)") + ", never used for a choice",
        }
        test_from = "the test file" if data.dev is not None else "carved from train"
    return HeldOut(fit, val, test, {"roles": roles, "test_from": test_from, **info})
