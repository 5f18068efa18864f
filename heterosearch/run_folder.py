"""What makes a folder heterosearch's own, and how ``--overwrite`` clears one without touching anything else.

A run folder (``run``, ``score``, ``rank-report``, ``frontier`` and its per-budget folders)
carries a marker file, ``.heterosearch-run`` (JSON with a format version). ``--overwrite``
deletes only the files heterosearch writes, by name (``OWNED``); a folder that holds
anything else, or no marker, is refused with one line, and nothing is deleted. So a user's
folder that happens to contain a ``config.json`` is never removed, whatever the flags.

Folders written before the marker existed are recognised by their ``config.json`` (it
records ``versions.heterosearch``), and the same foreign-file check applies to them.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from heterosearch.errors import UserError

MARKER = ".heterosearch-run"
LOCK = ".heterosearch-run.lock"
MARKER_FORMAT = 1

#: Every name heterosearch writes inside a run folder (glob patterns, relative paths).
OWNED = (
    MARKER,
    LOCK,
    "config.json",
    "scores.json",
    "search.json",
    "allocation.json",
    "adapter_config.json",
    "adapter_model.safetensors",
    "verify.json",
    "verify_seeds.json",
    "rank_report.json",
    "frontier.json",
    "results.json",
    "report.md",
    "study.journal",
    "study.journal.lock",
    ".write-test",
    ".*.tmp",
    "plots/*.png",
    "checkpoints/*.pt",
    "checkpoints/.*.tmp",
    "adapter/adapter_config.json",  # the PEFT-native folder of a LoRA-only winner (export/peft_native.py)
    "adapter/adapter_model.safetensors",
    "adapter/.*.tmp",
    "adapter/.peft-*",
)
#: Sub-folders heterosearch creates; a frontier's per-budget folders are run folders themselves.
OWNED_DIRS = ("plots", "checkpoints", "adapter")
BUDGET_DIR = "b[0-9]*"


def mark(folder: Path, kind: str = "run") -> None:
    """Write the marker (idempotent)."""
    from heterosearch.export.files import write_json
    from heterosearch.version import __version__

    path = Path(folder) / MARKER
    if not path.is_file():
        write_json(path, {"format_version": MARKER_FORMAT, "kind": kind, "heterosearch": __version__})


def is_ours(folder: Path) -> bool:
    """The folder has our marker, or is a run folder from before the marker (see the module doc)."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return True
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        doc = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("versions"), dict) and "heterosearch" in doc["versions"] \
        and isinstance(doc.get("config"), dict)


def owned_name(rel: str) -> bool:
    return any(fnmatch.fnmatchcase(rel, pat) for pat in OWNED)


def foreign_entries(folder: Path) -> list[str]:
    """Relative paths under ``folder`` that heterosearch did not write (sorted; empty = all ours)."""
    folder = Path(folder)
    out: list[str] = []
    for entry in sorted(folder.iterdir()):
        rel = entry.name
        if entry.is_symlink():
            out.append(rel)
        elif entry.is_dir():
            if rel in OWNED_DIRS:
                out += [f"{rel}/{e.name}" for e in sorted(entry.iterdir()) if e.is_dir() or not owned_name(f"{rel}/{e.name}")]
            elif fnmatch.fnmatchcase(rel, BUDGET_DIR) and is_ours(entry):
                out += [f"{rel}/{x}" for x in foreign_entries(entry)]
            else:
                out.append(rel + "/")
        elif not owned_name(rel):
            out.append(rel)
    return out


def clear(folder: Path) -> int:
    """Delete every file heterosearch wrote in ``folder`` (refusing first if anything else is there).

    Returns the number of files deleted. The folder itself is kept.
    """
    folder = Path(folder)
    if not is_ours(folder):
        raise UserError(f"{folder} is not a heterosearch run folder (no {MARKER}); nothing was deleted: pick another --out")
    foreign = foreign_entries(folder)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise UserError(
            f"--overwrite refuses {folder}: it holds files heterosearch did not write ({foreign[0]}{more}); "
            "nothing was deleted: move them away or pick another --out"
        )
    return _delete_owned(folder)


def _delete_owned(folder: Path) -> int:
    n = 0
    for entry in sorted(folder.iterdir()):
        if entry.name == LOCK:
            continue  # held by this process while it clears the folder; deleting it would let another writer in
        if entry.is_dir():
            n += _delete_owned(entry)
            try:
                entry.rmdir()
            except OSError:
                pass
        else:
            entry.unlink()
            n += 1
    return n


_HELD: dict[str, int] = {}  # folder -> fd of the lock this process holds (a process may reopen its own folder)


def lock(folder: Path) -> None:
    """Hold an exclusive lock on ``folder`` for the rest of this process (writers only).

    A second process that tries to write the same folder gets one line instead of two runs
    interleaving their files. ``flock`` locks die with the process, so a killed run leaves no
    stale lock behind.
    """
    import fcntl
    import os

    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD:
        return
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            other = os.read(fd, 32).decode(errors="replace").strip()
        finally:
            os.close(fd)
        who = f" (pid {other})" if other.isdigit() else ""
        raise UserError(f"another heterosearch process{who} is writing {folder}; wait for it to finish or pick another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD[key] = fd


def unlock(folder: Path) -> None:
    """Release this process's lock on ``folder`` (tests; a process's locks also end with it)."""
    import os

    fd = _HELD.pop(str(Path(folder).resolve()), None)
    if fd is not None:
        os.close(fd)


def release_all() -> None:
    """Release every lock this process holds (the end of a CLI command)."""
    for key in list(_HELD):
        unlock(Path(key))


def holds(folder: Path) -> bool:
    return str(Path(folder).resolve()) in _HELD
