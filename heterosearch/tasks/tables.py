"""Read a user's data files into rows: CSV, TSV, JSON, JSON Lines, plain text, or a hub dataset.

One job: turn a file (or a folder of train/validation/test files, or a ``datasets`` hub name)
into ``Table`` objects of plain dict rows with a line number each, so every later error can
say ``FILE:LINE``. What the columns mean (text, label, prompt, response) is decided by the
task modules (``user_data.py``, ``lm.py``). Every failure is a one-line ``UserError``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError

#: File endings a user's data may have, and the reader of each.
FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".txt": "txt"}
#: Folder layout: the training file, the selection split, and the report split (first name found wins).
TRAIN_NAMES = ("train",)
VAL_NAMES = ("validation", "valid", "val")
REPORT_NAMES = ("test", "dev")


@dataclass
class Table:
    """The rows of one file (or hub split): column -> value dicts, with the line (or record) each came from."""

    rows: list[dict[str, Any]]
    lines: list[int]
    columns: list[str]
    source: str

    def where(self, i: int) -> str:
        return f"{self.source}:{self.lines[i]}"


def read_table(path: Path, *, allow_txt: bool = False) -> Table:
    """One file's rows. CSV: standard quoting; TSV: tab-separated, no quoting (GLUE's convention: a
    stray ``"`` would otherwise swallow rows); JSON: a list of objects or an object of equal-length
    columns; JSON Lines: one object per line; TXT (language modelling only): one ``text`` per non-blank line."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None or (kind == "txt" and not allow_txt):
        allowed = ", ".join(k for k in FORMATS if allow_txt or k != ".txt")
        raise UserError(f"{path}: unknown data file type {path.suffix or '(none)'!r} (expected {allowed})")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not text.strip():
        raise UserError(f"{path}: empty file")
    table = {"csv": _read_delimited, "tsv": _read_delimited, "json": _read_json, "jsonl": _read_jsonl,
             "txt": _read_txt}[kind](text, str(path), kind)
    if not table.rows:
        raise UserError(f"{path}: no data rows")
    return table


def _read_delimited(text: str, where: str, kind: str) -> Table:
    if kind == "tsv":
        reader = csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
        while not header:
            header = next(reader)
        header = [h.strip() for h in header]
        rows, lines = [], []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise UserError(f"{where}:{reader.line_num}: expected {len(header)} fields (header: {', '.join(header)}), "
                                f"found {len(row)}")
            rows.append(dict(zip(header, row)))
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise UserError(f"{where}:{reader.line_num}: not valid {kind.upper()} ({exc})") from None
    if len(set(header)) != len(header):
        raise UserError(f"{where}: the header names a column twice ({', '.join(header)})")
    return Table(rows, lines, header, where)


def _check_record(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a JSON object (column -> value), found {type(value).__name__}")
    return value


def _read_json(text: str, where: str, kind: str) -> Table:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):  # columns
        lengths = {len(v) for v in doc.values()}
        if len(lengths) != 1:
            raise UserError(f"{where}: the JSON columns have different lengths ({sorted(lengths)})")
        doc = [dict(zip(doc, values)) for values in zip(*doc.values())]
    if not isinstance(doc, list):
        raise UserError(f"{where}: expected a JSON list of objects or an object of columns")
    rows = [_check_record(r, f"{where}: record {i + 1}") for i, r in enumerate(doc)]
    return Table(rows, list(range(1, len(rows) + 1)), list(rows[0]) if rows else [], where)


def _read_jsonl(text: str, where: str, kind: str) -> Table:
    rows, lines = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}:{lineno}: not valid JSON ({exc.msg})") from None
        rows.append(_check_record(value, f"{where}:{lineno}"))
        lines.append(lineno)
    return Table(rows, lines, list(rows[0]) if rows else [], where)


def _read_txt(text: str, where: str, kind: str) -> Table:
    pairs = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return Table([{"text": line} for _, line in pairs], [i for i, _ in pairs], ["text"], where)


def find_files(root: Path, *, allow_txt: bool = False) -> dict[str, Path]:
    """``{"train": ..., "val": ..., "report": ...}`` (the last two when present) for a file or a folder.

    A file is the training file alone. A folder holds ``train.EXT`` and optionally
    ``validation|valid|val.EXT`` (selection) and ``test|dev.EXT`` (report); when it has
    ``test`` and ``dev`` but no validation file, ``dev`` is the selection split.
    """
    if root.is_file():
        return {"train": root}
    if not root.exists():
        raise UserError(f"{root}: no such file or folder")
    exts = [e for e in FORMATS if allow_txt or e != ".txt"]

    def pick(names: tuple[str, ...]) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for name in names:
            hits = [root / f"{name}{e}" for e in exts if (root / f"{name}{e}").is_file()]
            if len(hits) > 1:
                raise UserError(f"{root}: more than one {name} file ({', '.join(h.name for h in hits)}); keep one")
            if hits:
                found[name] = hits[0]
        return found

    train = pick(TRAIN_NAMES)
    if not train:
        raise UserError(f"{root}: no train file (expected train{'/'.join(exts)} beside optional validation and test files)")
    out = {"train": train["train"]}
    val, report = pick(VAL_NAMES), pick(REPORT_NAMES)
    if val:
        out["val"] = next(iter(val.values()))
    if "test" in report:
        out["report"] = report["test"]
        if "dev" in report and "val" not in out:
            out["val"] = report["dev"]
    elif "dev" in report:
        out["report"] = report["dev"]
    return out


def read_tables(root: Path, *, allow_txt: bool = False) -> dict[str, Table]:
    """Every file ``find_files`` names, read."""
    return {role: read_table(path, allow_txt=allow_txt) for role, path in find_files(root, allow_txt=allow_txt).items()}


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:157] + '...' if len(text) > 160 else text}" if text else type(exc).__name__


def load_hub_tables(name: str) -> dict[str, Table]:
    """``train`` / ``val`` / ``report`` tables of a ``datasets`` hub dataset ``NAME`` or ``NAME:CONFIG``.

    Refuses at once when the hub is unreachable and offline mode is off (``datasets`` would retry
    for minutes); in offline mode a cached copy still loads. Any failure is one line.
    """
    from heterosearch.models.loading import _hub_reachable

    path, _, config = name.partition(":")
    try:
        if not _offline_mode() and not _hub_reachable():
            raise ConnectionError("no network route to the hub")
        import datasets

        dsd = datasets.load_dataset(path, config or None)
    except Exception as exc:  # offline, unknown name, not installed: all mean "pass a file"
        raise UserError(
            f"--task {name!r} is not a GLUE task, a data file or a folder, and the dataset hub could not load it "
            f"({_short_reason(exc)}); pass a CSV/TSV/JSON/JSONL file or a folder with train/validation/test files"
        ) from None
    return hub_tables(dsd, f"hub:{name}")


def _offline_mode() -> bool:
    import os

    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(v, "").strip().lower() in truthy
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_tables(dsd: Any, source: str) -> dict[str, Table]:
    """A ``datasets.DatasetDict`` as tables: ``train``, ``validation`` (selection), ``test`` (report).

    A split whose labels are all -1 (the hub's mark of hidden test labels) is left out, so the
    report split is then carved from train, as for a file without a test file.
    """
    if "train" not in dsd:
        raise UserError(f"{source}: the hub dataset has no 'train' split (has: {', '.join(dsd)})")
    out: dict[str, Table] = {}
    for role, names in (("train", ("train",)), ("val", ("validation", "valid", "val")), ("report", ("test", "dev"))):
        split = next((n for n in names if n in dsd), None)
        if split is None:
            continue
        part = dsd[split]
        columns = list(part.column_names)
        rows = [dict(r) for r in part]  # ClassLabel columns come as their integer ids
        if role != "train" and "label" in columns and rows and all(r.get("label") in (-1, None) for r in rows):
            continue
        out[role] = Table(rows, list(range(1, len(rows) + 1)), columns, f"{source}:{split}")
    if not out["train"].rows:
        raise UserError(f"{source}: the hub dataset's train split is empty")
    return out
