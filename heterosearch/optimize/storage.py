"""Where a study lives: a journal file in the run folder (one machine, any number of processes)
or Optuna's RDB storage on PostgreSQL (workers on other machines), opened with one-line errors.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError

STUDY_NAME = "heterosearch"  # the study in a run folder's journal file
HEARTBEAT_INTERVAL = 10  # seconds between heartbeats of a running trial (RDB storages)
MAX_RETRY = 3  # a trial whose process died is retried with the same parameters this often


def is_url(storage: str | Path | None) -> bool:
    return storage is not None and "://" in str(storage)


def describe(storage: str | Path) -> str:
    """The storage for messages: a path, or the URL with its password hidden."""
    if not is_url(storage):
        return str(storage)
    try:
        from sqlalchemy.engine import make_url

        return make_url(str(storage)).render_as_string(hide_password=True)
    except Exception:
        return str(storage).split("://", 1)[0] + "://..."


def _normalise_url(url: str) -> str:
    """``postgres://`` (what many services hand out) -> ``postgresql://``, with an installed driver.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3; the ``postgres`` extra installs
    psycopg2-binary, so a bare URL gets whichever of the two is importable.
    """
    import importlib.util

    for bare in ("postgres://", "postgresql://"):
        if url.startswith(bare):
            rest = url[len(bare):]
            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
                return "postgresql+psycopg2://" + rest
            return "postgresql://" + rest
    return url


def open_storage(storage: str | Path, heartbeat: int = HEARTBEAT_INTERVAL, grace: int | None = None) -> Any:
    """A journal file (a path) or Optuna's RDB storage with heartbeats and retries (a URL).

    ``grace`` (default 3 x ``heartbeat``) is how long a running trial may go without a
    heartbeat before another process fails it and enqueues a retry with the same parameters.
    """
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback

    if not is_url(storage):
        path = Path(storage)
        if path.exists() and not path.is_file():
            raise UserError(f"study storage {path} is not a file (pass a journal file path or a postgresql:// URL)")
        _repair_journal(path)
        try:
            return JournalStorage(_journal_backend(str(path)))
        except OSError as exc:
            raise UserError(f"cannot open study journal {path}: {exc.strerror or exc}") from None
    url = _normalise_url(str(storage))
    if heartbeat < 1:
        raise UserError(f"--heartbeat must be >= 1 second, got {heartbeat}")
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine["connect_args"] = {"connect_timeout": 10}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=int(heartbeat),
                grace_period=int(grace if grace is not None else 3 * heartbeat),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
    except ImportError:
        raise UserError(
            f"storage {describe(storage)} needs a database driver: pip install 'heterosearch[postgres]' (psycopg2-binary)"
        ) from None
    except Exception as exc:  # bad URL, server down, wrong password: all are "fix the URL or start the server"
        raise UserError(
            f"cannot open study storage {describe(storage)}: {_first_line(exc)} (check the URL and that the server accepts connections)"
        ) from None


def _journal_backend(path: str) -> Any:
    """Optuna's journal file, appending without an ``os.fsync`` per write.

    Why: a trial writes about 40 lines (one per suggested parameter, attributes, state), and
    Optuna's backend fsyncs each one; on this machine that was most of the search time
    (reports/performance.md, 300 trials without repair: 8.2 s with Optuna's backend vs 3.5 s
    in memory on a quiet machine; 25 s vs 6.5 s without fsync under load). The file
    lock is kept, so several processes still share one journal. A killed process loses
    nothing (every line reaches the kernel before the call returns); a machine crash can
    lose the last lines or tear one, which ``_repair_journal`` drops on reopen, and the
    resumed search re-runs those trials.
    """
    from optuna.storages.journal import JournalFileBackend

    class JournalFile(JournalFileBackend):  # type: ignore[misc]
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            import json

            try:  # private in Optuna (4.2-5.0): fall back to the fsyncing original if it moves
                from optuna.storages.journal._file import get_lock_file

                lock, file_path = self._lock, self._file_path
            except (ImportError, AttributeError):
                return super().append_logs(logs)
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with get_lock_file(lock):
                with open(file_path, "ab") as f:
                    f.write(text.encode("utf-8"))

    return JournalFile(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:200]


def _repair_journal(path: Path) -> None:
    """Drop a half-written last line (a process killed mid-append): appending after it would corrupt the file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        fh.truncate(data.rfind(b"\n") + 1)


def delete_study(storage: str | Path, study_name: str) -> bool:
    """Remove ``study_name`` (``run --overwrite`` on a shared storage); False if there was none."""
    import optuna

    try:
        optuna.delete_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        return False
    return True


def default_study_name(run_dir: Path, storage: str | None) -> str:
    """``heterosearch`` in the run folder's journal; the run folder's name on a shared storage."""
    return STUDY_NAME if storage is None else Path(run_dir).resolve().name


def check_storage(storage: str) -> None:
    """Fail early (before minutes of scoring) on a storage that cannot be opened."""
    if is_url(storage):
        open_storage(storage)
        return
    parent = Path(storage).expanduser().resolve().parent
    if not parent.is_dir():
        raise UserError(f"--storage {storage}: folder {parent} does not exist (pass a journal file path or a postgresql:// URL)")
