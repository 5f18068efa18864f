"""A user's own classification or regression data as a task: which columns, which problem, which labels.

The files are read by ``tables.py``; here the columns are chosen (``--text-columns``,
``--label-column``, or the usual names), the problem is decided (``--problem``, or inferred:
string labels or a few integers -> classification, many distinct non-integer numbers ->
regression, anything else -> ask), labels are coded, and a ``TaskSpec`` is built with the
GLUE metrics that fit (binary: accuracy, F1 of the class coded 1; multi-class: accuracy,
Matthews; regression: Pearson, Spearman). Splits: ``tasks/splits.py`` (``held_out``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from heterosearch.errors import UserError
from heterosearch.tasks._loading import Split, TaskData
from heterosearch.tasks._spec import TaskSpec
from heterosearch.tasks.tables import Table

PROBLEMS = ("classification", "regression")
#: At most this many distinct integer labels read as classes; more distinct non-integer numbers as regression.
MAX_CLASSES = 20
#: Column names tried, in order, when --text-columns is not given.
TEXT_COLUMN_GUESSES = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question", "sentence"),
                       ("text",), ("sentence",))
LABEL_COLUMN_GUESSES = ("label", "labels", "score")
_INT = re.compile(r"^[+-]?\d+$")


def parse_columns(value: str | None) -> tuple[str, ...] | None:
    """``"a,b"`` -> ``("a", "b")``; one or two names (single texts or pairs)."""
    if value is None:
        return None
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not 1 <= len(names) <= 2 or len(set(names)) != len(names):
        raise UserError(f"--text-columns takes one or two different column names like 'text' or 'a,b', got {value!r}"[:200])
    return names


def check_problem(problem: str | None) -> None:
    if problem is not None and problem not in PROBLEMS:
        raise UserError(f"unknown --problem {problem!r} (expected {' or '.join(PROBLEMS)})"[:200])


def build_user_task(tables: dict[str, Table], name: str, source: str, text_columns: tuple[str, ...] | None,
                    label_column: str | None, problem: str | None) -> TaskData:
    """``tables`` (``train`` and optionally ``val``, ``report``) -> the task's spec and splits."""
    check_problem(problem)
    train = tables["train"]
    texts = text_columns or _guess_texts(train)
    _check_columns(tables, texts)  # a named text column that is not there, before any guess about the label
    label = label_column or _guess_label(train)
    _check_columns(tables, (label,))
    raw = {role: [_label_value(t, i, label) for i in range(len(t.rows))] for role, t in tables.items()}
    problem = problem or _infer_problem(raw["train"], train, label)
    label_map: dict[str, int] | None = None
    if problem == "classification":
        keys = sorted({_class_key(v) for v in raw["train"]}, key=_class_order)
        if len(keys) < 2:
            raise UserError(f"{train.source}: label column {label!r} has a single value ({keys[0]!r}); classification needs two or more")
        label_map = {k: i for i, k in enumerate(keys)}

    def split(role: str) -> Split:
        table = tables[role]
        rows = [tuple(_text(table, i, c) for c in texts) for i in range(len(table.rows))]
        if label_map is None:
            labels: list[Any] = [_number(table, i, v, label) for i, v in enumerate(raw[role])]
        else:
            labels = [_class_id(table, i, v, label_map) for i, v in enumerate(raw[role])]
        return Split(texts=rows, labels=labels, source=table.source)

    n = len(label_map or {})
    metrics = ("pearson", "spearman") if label_map is None else ("accuracy", "f1") if n == 2 else ("accuracy", "matthews")
    spec = TaskSpec(
        name=name, glue_dir=source, text_columns=texts, label_column=label, label_map=label_map,
        num_labels=n or 1, metrics=metrics, main_metric=metrics[0], hub_name=("", ""), hub_text_columns=texts,
        test_has_labels=True, kind="user",
    )
    return TaskData(spec=spec, train=split("train"), dev=split("report") if "report" in tables else None, test=None,
                    source=source, val=split("val") if "val" in tables else None)


def _check_columns(tables: dict[str, Table], columns: tuple[str, ...]) -> None:
    for table in tables.values():
        for column in columns:
            if column not in table.columns:
                raise UserError(f"{table.source}: missing column {column!r} (columns: {', '.join(table.columns)})"[:300])


def _guess_texts(train: Table) -> tuple[str, ...]:
    for guess in TEXT_COLUMN_GUESSES:
        if set(guess) <= set(train.columns):
            return guess
    raise UserError(f"{train.source}: no text column found: pass --text-columns NAME or A,B (columns: {', '.join(train.columns)})"[:300])


def _guess_label(train: Table) -> str:
    for guess in LABEL_COLUMN_GUESSES:
        if guess in train.columns:
            return guess
    raise UserError(f"{train.source}: no label column found: pass --label-column NAME (columns: {', '.join(train.columns)})"[:300])


def _label_value(table: Table, i: int, column: str) -> Any:
    """A label as read: a string (CSV/TSV: numbers become int/float when they parse), int, float or bool."""
    row = table.rows[i]
    if column not in row:
        raise UserError(f"{table.where(i)}: missing column {column!r}")
    value = row[column]
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise UserError(f"{table.where(i)}: empty label in column {column!r}")
        if _INT.match(value):
            return int(value)
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    if value is None or isinstance(value, (list, dict)):
        raise UserError(f"{table.where(i)}: label {str(value)[:40]!r} in column {column!r} is not a string or number")
    return value


def _integral(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and float(v).is_integer()


def _infer_problem(values: list[Any], train: Table, column: str) -> str:
    distinct = set(values)
    if any(isinstance(v, (str, bool)) for v in values):
        return "classification"
    if all(_integral(v) for v in values):
        if len(distinct) <= MAX_CLASSES:
            return "classification"
    elif len(distinct) > MAX_CLASSES:
        return "regression"
    kind = "integers" if all(_integral(v) for v in values) else "numbers"
    raise UserError(f"{train.source}: cannot tell whether label column {column!r} ({len(distinct)} distinct {kind}) is "
                    "classification or regression: pass --problem classification or --problem regression")


def _class_key(v: Any) -> str:
    """The label's class name: integers as ``"3"`` whether written 3, 3.0 or "3"."""
    if isinstance(v, bool):
        return str(v).lower()
    return str(int(v)) if _integral(v) else str(v)


def _class_order(key: str) -> tuple[int, float, str]:
    """Numeric class names in numeric order (2 before 10), then the others alphabetically."""
    try:
        return (0, float(key), "")
    except ValueError:
        return (1, 0.0, key)


def _class_id(table: Table, i: int, value: Any, label_map: dict[str, int]) -> int:
    key = _class_key(value)
    if key not in label_map:
        known = ", ".join(repr(k) for k in list(label_map)[:10])
        raise UserError(f"{table.where(i)}: label {key[:40]!r} does not occur in the training file (its labels: {known})")
    return label_map[key]


def _number(table: Table, i: int, value: Any, column: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{table.where(i)}: bad label {str(value)[:40]!r} in column {column!r} (regression needs a finite number)")
    return float(value)


def _text(table: Table, i: int, column: str) -> str:
    row = table.rows[i]
    if column not in row:
        raise UserError(f"{table.where(i)}: missing column {column!r}")
    value = row[column]
    if value is None or isinstance(value, (list, dict)):
        raise UserError(f"{table.where(i)}: column {column!r} holds {type(value).__name__}, not text")
    return str(value)
