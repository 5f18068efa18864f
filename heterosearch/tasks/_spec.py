"""What a GLUE task is: files, columns, label coding and metrics (no data, no heavy imports).

The specs describe the public GLUE TSV distribution, because that is what the offline
copies (``/work/shared/data/glue``, the packaged MRPC) and most users' local mirrors look
like; the dataset-hub layout differs only in column names, kept in ``hub_text_columns``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from heterosearch.errors import UserError
from heterosearch.registry import Registry

#: Metric names ``compute_metrics`` knows; a spec may only ask for these.
METRIC_NAMES = ("accuracy", "f1", "matthews", "pearson", "spearman", "loss", "perplexity")


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one GLUE task.

    Frozen so a spec can be shared by the registry, data and reports without anyone
    mutating the label coding behind the others' back.
    """

    name: str  # registry key, e.g. "mrpc"
    glue_dir: str  # folder name in the GLUE distribution, e.g. "MRPC"
    text_columns: tuple[str, ...]  # 1 (single sentence) or 2 (sentence pair) TSV columns
    label_column: str
    label_map: dict[str, int] | None  # raw TSV string -> class id; None means regression
    num_labels: int  # 1 for regression
    metrics: tuple[str, ...]
    main_metric: str
    hub_name: tuple[str, str]  # (path, config) for datasets.load_dataset
    has_header: bool = True
    # Column names by position, for files without a header row (CoLA).
    columns: tuple[str, ...] | None = None
    test_has_labels: bool = False  # GLUE keeps test labels private
    hub_text_columns: tuple[str, ...] = field(default=("sentence1", "sentence2"))
    # "glue" (a spec below), "user" (a user's CSV/TSV/JSON(L) file or hub dataset, tasks/user_data.py)
    # or "lm" (causal language modelling, tasks/lm.py: no labels, a loss on response tokens).
    kind: str = "glue"
    higher_is_better: bool = True  # of main_metric: False for a loss or perplexity
    # Training epochs of the recipe on this task; None = recipe.EPOCHS (3, chosen on MRPC). A small
    # training set gets more: RTE's 2,241 pairs are 213 steps in 3 epochs, where uniform LoRA stays at
    # chance (reports/recipe-sweep/rte-83k; the LoRA paper's GLUE recipes also set epochs per task).
    train_epochs: float | None = None

    def __post_init__(self) -> None:
        # Catch a typo in a spec at import time instead of mid-search.
        if not 1 <= len(self.text_columns) <= 2:
            raise ValueError(f"task {self.name!r}: text_columns must have 1 or 2 names")
        if len(self.hub_text_columns) != len(self.text_columns):
            raise ValueError(f"task {self.name!r}: hub_text_columns must match text_columns")
        unknown = [m for m in self.metrics if m not in METRIC_NAMES]
        if unknown or self.main_metric not in self.metrics:
            raise ValueError(f"task {self.name!r}: bad metrics {self.metrics} / {self.main_metric!r}")
        if self.kind == "lm":
            if self.label_map is not None or self.num_labels != 0 or self.higher_is_better:
                raise ValueError(f"task {self.name!r}: a language-modelling task has no labels and lower-is-better metrics")
        elif (self.label_map is None) != (self.num_labels == 1):
            raise ValueError(f"task {self.name!r}: regression needs label_map=None and num_labels=1")
        if self.train_epochs is not None and not 0 < self.train_epochs <= 1000:
            raise ValueError(f"task {self.name!r}: train_epochs must be in (0, 1000]")
        if not self.has_header and not self.columns:
            raise ValueError(f"task {self.name!r}: a headerless task needs `columns`")

    @property
    def is_regression(self) -> bool:
        return self.label_map is None and self.kind != "lm"

    @property
    def is_lm(self) -> bool:
        return self.kind == "lm"

    @property
    def is_classification(self) -> bool:
        return self.label_map is not None


def normalise_task_name(name: str) -> str:
    """``"STS-B"``, ``"sts_b"`` and ``"stsb"`` all mean the same task."""
    return name.strip().lower().replace("-", "").replace("_", "")


class _TaskRegistry(Registry[TaskSpec]):
    """A Registry whose lookups forgive case and separators (``sst-2``, ``STS-B``)."""

    def get(self, name: str) -> TaskSpec:
        key = normalise_task_name(name)
        if key in self._items:
            return self._items[key]
        names = self.names()
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown {self.what} {name!r}{hint} (available: {', '.join(names)})")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalise_task_name(name) in self._items


TASKS: Registry[TaskSpec] = _TaskRegistry("task")

_BINARY = {"0": 0, "1": 1}

for _spec in (
    TaskSpec(
        name="mrpc",
        glue_dir="MRPC",
        text_columns=("#1 String", "#2 String"),
        label_column="Quality",
        label_map=_BINARY,
        num_labels=2,
        metrics=("accuracy", "f1"),
        main_metric="accuracy",
        hub_name=("glue", "mrpc"),
    ),
    TaskSpec(
        name="rte",
        glue_dir="RTE",
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        label_map={"entailment": 0, "not_entailment": 1},
        num_labels=2,
        metrics=("accuracy",),
        main_metric="accuracy",
        hub_name=("glue", "rte"),
        # 10 epochs at lr 1e-3 (validation split, 83k, 3 seeds, reports/recipe-sweep/rte-83k): uniform
        # LoRA on all sites 56.9 %, on q,v 55.3 % (3 epochs: 52.2 / 48.2 %, seed 0), against full
        # fine-tuning's 60.2 % and the majority class's 50.2 %.
        train_epochs=10.0,
    ),
    TaskSpec(
        name="stsb",
        glue_dir="STS-B",
        text_columns=("sentence1", "sentence2"),
        label_column="score",
        label_map=None,
        num_labels=1,
        metrics=("pearson", "spearman"),
        main_metric="pearson",
        hub_name=("glue", "stsb"),
    ),
    TaskSpec(
        name="sst2",
        glue_dir="SST-2",
        text_columns=("sentence",),
        label_column="label",
        label_map=_BINARY,
        num_labels=2,
        metrics=("accuracy",),
        main_metric="accuracy",
        hub_name=("glue", "sst2"),
        hub_text_columns=("sentence",),
    ),
    TaskSpec(
        name="cola",
        glue_dir="CoLA",
        text_columns=("sentence",),
        label_column="label",
        label_map=_BINARY,
        num_labels=2,
        metrics=("matthews",),
        main_metric="matthews",
        hub_name=("glue", "cola"),
        has_header=False,
        columns=("source", "label", "original_label", "sentence"),
        hub_text_columns=("sentence",),
    ),
):
    TASKS.add(_spec.name, _spec)
del _spec
