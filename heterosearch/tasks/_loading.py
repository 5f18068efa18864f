"""Find and read a GLUE task's train/dev/test splits: user folder, packaged copy, then the hub.

Local TSVs come first because the search runs where no hub is reachable (CI, clusters);
the hub is only a last resort, and every failure becomes a one-line ``UserError`` that
says which file or folder is wrong and what layout was expected.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.tasks._spec import TASKS, TaskSpec, normalise_task_name

_PACKAGE = "heterosearch.tasks"


@dataclass
class Split:
    """One split as plain Python lists, so batching/tokenising need no dataset library."""

    texts: list[tuple[str, ...]]
    labels: list[int] | list[float] | None  # None when the split is unlabelled (GLUE test)
    source: str  # file path, or "hub:glue/mrpc:train"

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TaskData:
    """All splits of one task plus where they came from (stamped into results)."""

    spec: TaskSpec
    train: Split
    dev: Split | None  # the report split (GLUE dev; a user's test/dev file); None: carved from train (tasks/splits.py)
    test: Split | None  # GLUE's unlabelled test file (never scored)
    source: str
    val: Split | None = None  # a given selection split (a user's validation file); None: carved from train


def load_task_data(task: str | TaskSpec, data_dir: str | Path | None = None) -> TaskData:
    """Load ``task`` from ``data_dir`` if given, else the packaged copy, else the dataset hub.

    ``data_dir`` may be a GLUE root (``DIR/MRPC/train.tsv``) or a task folder
    (``DIR/train.tsv``). An explicit ``data_dir`` never falls back silently: if it is
    wrong the user must hear about it rather than get different data.
    """
    spec = task if isinstance(task, TaskSpec) else TASKS.get(task)
    if data_dir is not None:
        folder = _find_task_folder(spec, Path(data_dir).expanduser())
        return _load_folder(spec, folder, str(folder))
    packaged = resources.files(_PACKAGE) / "data" / spec.name
    if packaged.is_dir() and (packaged / "train.tsv").is_file():
        return _load_folder(spec, packaged, f"package:{_PACKAGE}/data/{spec.name}")
    return _load_hub(spec)


def _layout(spec: TaskSpec) -> str:
    return (
        f"expected a GLUE root DIR/{spec.glue_dir}/train.tsv, dev.tsv "
        f"or a task folder DIR/train.tsv, dev.tsv"
    )


def _find_task_folder(spec: TaskSpec, root: Path) -> Path:
    """Resolve a GLUE root or a task folder to the folder that holds the TSVs."""
    if not root.is_dir():
        raise UserError(f"data dir {root}: no such directory ({_layout(spec)})")
    candidates = [root / spec.glue_dir]
    # Tolerate "mrpc", "sst2", "sts_b" mirrors as well as GLUE's own "SST-2", "STS-B".
    candidates += sorted(
        c for c in root.iterdir() if c.is_dir() and normalise_task_name(c.name) == spec.name
    )
    for folder in candidates:
        if folder.is_dir():
            break
    else:
        folder = root
        if not (root / "train.tsv").is_file():
            raise UserError(f"data dir {root}: no {spec.glue_dir}/train.tsv or train.tsv ({_layout(spec)})")
    missing = [f for f in ("train.tsv", "dev.tsv") if not (folder / f).is_file()]
    if missing:
        raise UserError(f"data dir {folder}: missing {' and '.join(missing)} ({_layout(spec)})")
    return folder


def _load_folder(spec: TaskSpec, folder: Path | Traversable, source: str) -> TaskData:
    test_file = folder / "test.tsv"
    return TaskData(
        spec=spec,
        train=read_tsv_split(spec, folder / "train.tsv", require_labels=True),
        dev=read_tsv_split(spec, folder / "dev.tsv", require_labels=True),
        test=read_tsv_split(spec, test_file, require_labels=spec.test_has_labels) if test_file.is_file() else None,
        source=source,
    )


def read_tsv_split(spec: TaskSpec, path: Path | Traversable, *, require_labels: bool) -> Split:
    """Read one GLUE TSV strictly: quoting off, fixed field count, every label parsed.

    Quoting is off because GLUE fields contain bare ``"``; with the csv default a stray
    quote silently swallows the following rows, which would shrink a split unnoticed.
    """
    where = str(path)
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            return _parse_rows(spec, reader, where, require_labels)
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{where}: cannot read ({exc.strerror or exc})") from None


def _parse_rows(spec: TaskSpec, reader: Any, where: str, require_labels: bool) -> Split:
    first: list[str] | None = next(reader, None)
    while first is not None and not first:  # leading blank lines
        first = next(reader, None)
    if first is None:
        raise UserError(f"{where}: empty file (expected tab-separated {spec.glue_dir} rows)")
    pending: list[tuple[int, list[str]]] = []
    if spec.has_header or set(spec.text_columns) <= set(first):
        # Headerless tasks (CoLA) still ship a test.tsv with an "index, sentence" header.
        header = [h.strip() for h in first]
    else:
        assert spec.columns is not None
        header = list(spec.columns)
        pending.append((reader.line_num, first))
    index = {name: i for i, name in enumerate(header)}
    needed = list(spec.text_columns) + ([spec.label_column] if require_labels else [])
    missing = [c for c in needed if c not in index]
    if missing:
        raise UserError(f"{where}: missing column {missing[0]!r} (header has: {', '.join(header)})")
    text_idx = [index[c] for c in spec.text_columns]
    label_idx = index.get(spec.label_column)

    texts: list[tuple[str, ...]] = []
    labels: list[Any] = []

    def take(lineno: int, row: list[str]) -> None:
        if len(row) != len(header):
            raise UserError(
                f"{where}:{lineno}: expected {len(header)} tab-separated fields, found {len(row)}"
            )
        texts.append(tuple(row[i] for i in text_idx))
        if label_idx is not None:
            labels.append(_parse_label(spec, row[label_idx], where, lineno))

    for lineno, row in pending:
        take(lineno, row)
    for row in reader:
        if row:  # blank lines (e.g. a trailing one) carry no example
            take(reader.line_num, row)
    if not texts:
        raise UserError(f"{where}: header but no data rows")
    return Split(texts=texts, labels=labels if label_idx is not None else None, source=where)


def _parse_label(spec: TaskSpec, raw: str, where: str, lineno: int) -> int | float:
    value = raw.strip()
    if spec.label_map is None:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise UserError(f"{where}:{lineno}: bad label {raw!r} (expected a number)")
        return number
    try:
        return spec.label_map[value]
    except KeyError:
        expected = ", ".join(repr(k) for k in spec.label_map)
        raise UserError(f"{where}:{lineno}: bad label {raw!r} (expected one of {expected})") from None


def _short_reason(exc: BaseException) -> str:
    """First line of an exception, capped: hub errors can be pages of HTTP detail."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_hub(spec: TaskSpec) -> TaskData:
    """Last resort; ``datasets`` is imported here only so local use never pays for it."""
    path, config = spec.hub_name
    try:
        import datasets

        dsd = datasets.load_dataset(path, config)
    except Exception as exc:  # offline, not installed, hub error: all mean "use --data-dir"
        raise UserError(
            f"no local data for task {spec.name!r}: pass --data-dir DIR "
            f"(GLUE TSV layout: DIR/{spec.glue_dir}/train.tsv, dev.tsv); "
            f"the dataset hub could not be reached ({_short_reason(exc)})"
        ) from exc
    source = f"hub:{path}/{config}"
    for needed in ("train", "validation"):
        if needed not in dsd:
            raise UserError(f"{source}: hub dataset has no {needed!r} split (has: {', '.join(dsd)})")
    return TaskData(
        spec=spec,
        train=_hub_split(spec, dsd["train"], f"{source}:train"),
        dev=_hub_split(spec, dsd["validation"], f"{source}:validation"),
        test=_hub_split(spec, dsd["test"], f"{source}:test") if "test" in dsd else None,
        source=source,
    )


def _hub_split(spec: TaskSpec, part: Any, source: str) -> Split:
    """Hub GLUE uses sentence1/sentence2/label with the same 0/1 coding as the TSVs."""
    try:
        columns = [list(part[c]) for c in spec.hub_text_columns]
        raw = list(part["label"])
    except KeyError as exc:
        raise UserError(f"{source}: hub dataset lacks column {exc.args[0]!r}") from None
    texts = [tuple(str(t) for t in row) for row in zip(*columns)]
    labels: list[int] | list[float] | None
    labels = [float(x) for x in raw] if spec.is_regression else [int(x) for x in raw]
    if labels and all(x == -1 for x in labels):  # the hub marks hidden test labels as -1
        labels = None
    return Split(texts=texts, labels=labels, source=source)
