"""One validation layer for every JSON file heterosearch reads back from a run folder.

A run folder outlives the process that wrote it: files get truncated by a full disk, edited by
hand, copied between versions. Every reader therefore goes through ``read_run_file(path, kind)``,
which answers any damaged file with one ``UserError`` line naming the file, the field and the
command that rewrites the file, instead of a ``KeyError`` or ``TypeError`` traceback from deep
inside a report.

Each file has a small declarative schema (``files.py``, built from ``specs.py``). It lists the fields the code indexes into
(and so must be there, with the right type), nested as deep as the code goes, plus the
invariants the code relies on across fields (curve lengths, the seeds every candidate has).
Fields no reader uses are left free, so newer files with extra fields still load. Numbers the
code computes with must be finite: Python's json writes and reads ``NaN`` and ``Infinity``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.export.schema.evidence import FRONTIER, RANK_REPORT, VERIFY_SEEDS
from heterosearch.export.schema.files import ALLOCATION_FILE, CONFIG, RESULTS, SCORES, SEARCH, VERIFY, FileSchema
from heterosearch.export.schema.specs import _Mismatch, short

#: Every file heterosearch reads back, by its name in the run folder.
SCHEMAS: dict[str, FileSchema] = {
    "config.json": CONFIG,
    "scores.json": SCORES,
    "search.json": SEARCH,
    "allocation.json": ALLOCATION_FILE,
    "verify.json": VERIFY,
    "results.json": RESULTS,
    "verify_seeds.json": VERIFY_SEEDS,
    "rank_report.json": RANK_REPORT,
    "frontier.json": FRONTIER,
}
KINDS = tuple(SCHEMAS)



__all__ = ["KINDS", "SCHEMAS", "FileSchema", "check_document", "field_path", "read_run_file", "short"]


# -- reading -----------------------------------------------------------------------------------
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,40}")
_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")


def field_path(path: Iterable[Any]) -> str:
    """``winner.lora['L0.q']``, ``history[3].value``: readable, bounded, one line."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part[:30] + ('...' if len(part) > 30 else ''))}]"
    return out or "(top level)"


def _one_line(text: str) -> str:
    return _BREAKS.sub(" ", text)


def _error(path: Path, schema: FileSchema, problem: str) -> UserError:
    return UserError(_one_line(f"{path}{problem}; {schema.fix}"))


def check_document(doc: Any, kind: str, path: Path | str | None = None) -> dict[str, Any]:
    """Check an already parsed ``doc`` against the schema of ``kind``; returns it, or raises one UserError line."""
    schema = SCHEMAS[kind]
    where = Path(path) if path is not None else Path(kind)
    if not isinstance(doc, dict):
        raise _error(where, schema, f" is not a heterosearch {schema.title} file "
                                    f"(expected a JSON object, got {short(doc)})")
    if schema.format is not None and doc.get("format") != schema.format:
        raise _error(where, schema, f" is not a heterosearch {schema.title} file (format {schema.format!r}, "
                                    f"got {short(doc.get('format'))})")
    version = doc.get("format_version")
    if schema.format_version is not None and isinstance(version, int) and version > schema.format_version:
        # Before the fields: a newer format may have moved them, and the version is the real news.
        raise UserError(_one_line(f"{where} has format_version {short(version)}; this heterosearch reads up to "
                                  f"{schema.format_version}: upgrade heterosearch, or {schema.fix}"))
    try:
        schema.spec.check(doc, ())
        for invariant in schema.invariants:
            bad = invariant(doc)
            if bad is not None:
                raise _Mismatch(*bad)
    except _Mismatch as exc:
        raise _error(where, schema, f": field '{field_path(exc.path)}' {exc.problem}") from None
    return doc


def read_run_file(path: Path | str, kind: str | None = None) -> dict[str, Any]:
    """Read and check one run-folder JSON file (``kind``: its name, e.g. ``"search.json"``; default: the path's name).

    Missing, unreadable, not UTF-8, not JSON, or not the shape the code reads: one
    ``UserError`` line that names the file, the line or field, and the command that rewrites it.
    """
    path = Path(path)
    kind = kind or path.name
    if kind not in SCHEMAS:
        raise ValueError(f"no schema for {kind!r} (known: {', '.join(KINDS)})")
    schema = SCHEMAS[kind]
    if not path.is_file():
        raise UserError(_one_line(f"{path} does not exist: run `{schema.writer}` to write it"))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(_one_line(f"cannot read {path}: {exc.strerror or exc}")) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _error(path, schema, f" is not UTF-8 text (a bad byte on line {line}): the file is damaged") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _error(path, schema, f" is not valid JSON (line {exc.lineno}): {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep for the parser
        why = f"{type(exc).__name__}: {short(str(exc), 80)}"
        raise _error(path, schema, f" is not JSON heterosearch can read ({why})") from None
    return check_document(doc, kind, path)
