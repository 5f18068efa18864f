"""What ``--task`` names: a GLUE task, a user's data file or folder, a hub dataset, or ``lm:FILE``.

In this order: ``lm:PATH`` is causal language modelling (``lm.py``); a GLUE name (``mrpc``,
``STS-B``) is a GLUE task; an existing file or folder is the user's data (``user_data.py``);
``hub:NAME`` or any other name is a ``datasets`` hub dataset (``NAME`` or ``NAME:CONFIG``),
except a name that looks like a file, or like a misspelt GLUE task, which is answered at once.
``check_task`` is cheap (no file is read) and runs when the settings are built;
``load_task`` reads the data.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from heterosearch.errors import UserError
from heterosearch.tasks._spec import TASKS, normalise_task_name
from heterosearch.tasks.lm import PREFIX as LM_PREFIX
from heterosearch.tasks.tables import FORMATS
from heterosearch.tasks.user_data import check_problem, parse_columns

HUB_PREFIX = "hub:"


def task_kind(task: str) -> str:
    """``"lm"``, ``"glue"``, ``"user"`` (a file or folder) or ``"hub"``."""
    if task.startswith(LM_PREFIX):
        return "lm"
    if task.startswith(HUB_PREFIX):
        return "hub"
    if task in TASKS:
        return "glue"
    path = Path(task).expanduser()
    if path.exists() or path.suffix.lower() in FORMATS or _looks_like_path(task):
        return "user"
    return "hub"


def _looks_like_path(task: str) -> bool:
    # "org/name" is a hub id; "./x", "~/x", "a/b/c" or anything with a file ending is a path.
    return task.startswith((".", "~", "/")) or task.count("/") > 1


def check_task(task: str, data_dir: str | None = None, text_columns: str | None = None,
               label_column: str | None = None, problem: str | None = None) -> None:
    """The ``--task`` family of options, checked without reading data (one line on a mistake)."""
    kind = task_kind(task)
    mine = {"--text-columns": text_columns, "--label-column": label_column, "--problem": problem}
    given = [k for k, v in mine.items() if v is not None]
    if kind == "glue":
        if given:
            raise UserError(f"{given[0]} is for your own data (--task FILE); GLUE task {task!r} fixes its columns and labels")
        return
    if kind == "hub" and not task.startswith(HUB_PREFIX):
        close = difflib.get_close_matches(normalise_task_name(task), TASKS.names(), n=1, cutoff=0.75)
        if close and re.fullmatch(r"[\w-]+", task):
            TASKS.get(task)  # a misspelt GLUE task: "unknown task 'mrcp'; did you mean 'mrpc'?"
    if data_dir is not None:
        raise UserError(f"--data-dir is for GLUE tasks; with --task {task!r} the data comes from the task itself")
    if kind == "lm":
        if given:
            raise UserError(f"{given[0]} does not apply to lm: tasks (they read a 'text' or 'prompt'/'response' field)")
        path = Path(task[len(LM_PREFIX):]).expanduser()
        if not str(path).strip() or not path.exists():
            raise UserError(f"--task {task!r}: no such file or folder {str(path)!r} (expected lm:FILE.jsonl|json|csv|tsv|txt)"[:300])
        return
    check_problem(problem)
    parse_columns(text_columns)
    if label_column is not None and not label_column.strip():
        raise UserError("--label-column must name a column")
    if kind == "user" and not Path(task).expanduser().exists():
        raise UserError(f"--task {task!r}: no such file or folder"[:300])


def default_epochs(task: str) -> float:
    """The recipe's training epochs for ``--task``: the GLUE spec's own (RTE: 10), else ``recipe.EPOCHS``."""
    from heterosearch import recipe

    if task_kind(task) == "glue":
        own = TASKS.get(task).train_epochs
        if own is not None:
            return own
    return recipe.EPOCHS


def task_slug(task: str) -> str:
    """A short name for folder names and titles: ``mrpc``, ``reviews`` (reviews.csv), ``lm-chat``, ``imdb``."""
    kind = task_kind(task)
    if kind == "glue":
        return task
    body = task[len(LM_PREFIX):] if kind == "lm" else task[len(HUB_PREFIX):] if task.startswith(HUB_PREFIX) else task
    stem = Path(body.rstrip("/")).stem if kind in ("lm", "user") else body.replace("/", "_").replace(":", "_")
    stem = re.sub(r"[^\w.-]+", "_", stem).strip("_.") or "data"
    return f"lm-{stem}" if kind == "lm" else stem


def load_task(task: str, data_dir: str | None = None, text_columns: str | None = None,
              label_column: str | None = None, problem: str | None = None):  # noqa: ANN201 - TaskData
    """The task's ``TaskData`` (spec and splits) from wherever ``--task`` points."""
    from heterosearch.tasks._loading import load_task_data
    from heterosearch.tasks.lm import build_lm_task
    from heterosearch.tasks.tables import load_hub_tables, read_tables
    from heterosearch.tasks.user_data import build_user_task

    check_task(task, data_dir, text_columns, label_column, problem)
    kind = task_kind(task)
    if kind == "glue":
        return load_task_data(TASKS.get(task), data_dir)
    name = task_slug(task)
    if kind == "lm":
        path = Path(task[len(LM_PREFIX):]).expanduser()
        return build_lm_task(read_tables(path, allow_txt=True), name, str(path))
    if kind == "hub":
        hub = task[len(HUB_PREFIX):] if task.startswith(HUB_PREFIX) else task
        return build_user_task(load_hub_tables(hub), name, f"hub:{hub}", parse_columns(text_columns), label_column, problem)
    path = Path(task).expanduser()
    return build_user_task(read_tables(path), name, str(path), parse_columns(text_columns), label_column, problem)
