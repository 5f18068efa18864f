"""``--config FILE.yaml`` on every command: a file holds any of the command's options; the command line wins.

The file is one YAML mapping of option names (``train_epochs`` or ``train-epochs``) to values::

    # run.yaml
    task: mrpc
    budget: 0.5M
    lr: 0.002
    lora_dropout: 0.1

``heterosearch run --config run.yaml --seed 3`` then runs with those values and seed 3.
It works through click's ``default_map``: the file's values become the command's defaults,
so whatever the command line gives overrides them, and every command gets the mechanism
without code of its own (``OneLineErrors.main`` calls ``split_config``). Arguments (a run
folder) stay on the command line. Unknown keys, values of the wrong type and unreadable
files are one line and exit code 2, before any work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FLAG = "--config"
HELP = f"{FLAG} FILE.yaml: read any of this command's options from a YAML mapping; the command line overrides it."


def split_config(args: Sequence[str], commands: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None, str | None]:
    """``(args without --config FILE, {command: defaults} or None, an error line or None)``.

    Only ``--config`` after the command's name counts (``heterosearch run --config f.yaml``);
    everything after ``--`` is left alone.
    """
    args = list(args)
    name_at = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if name_at is None or args[name_at] not in commands:
        return args, None, None  # no command, or an unknown one: click answers that
    name = args[name_at]
    rest, path, i = args[: name_at + 1], None, name_at + 1
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i:]
            break
        if a == FLAG or a.startswith(FLAG + "="):
            if path is not None:
                return args, None, f"{FLAG} given twice"
            if a == FLAG:
                if i + 1 >= len(args):
                    return args, None, f"{FLAG} needs a YAML file"
                path, i = args[i + 1], i + 2
            else:
                path, i = a[len(FLAG) + 1:], i + 1
            continue
        rest.append(a)
        i += 1
    if path is None:
        return args, None, None
    try:
        defaults = load_defaults(Path(path), commands[name], name)
    except ValueError as exc:
        return args, None, str(exc)
    return rest, {name: defaults}, None


def load_defaults(path: Path, command: Any, name: str) -> dict[str, Any]:
    """The file's values keyed by the command's parameter names, type-checked (ValueError: one line)."""
    import yaml

    where = f"{FLAG} {path}"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{where}: not valid YAML{at}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected a mapping of option names to values, got {type(doc).__name__}")
    options = {p.name: p for p in command.params if getattr(p, "param_type_name", "option") == "option" and p.expose_value}
    arguments = {p.name for p in command.params if getattr(p, "param_type_name", "") == "argument"}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        norm = str(key).strip().lstrip("-").replace("-", "_")
        if norm in arguments:
            raise ValueError(f"{where}: {key!r} is an argument of `heterosearch {name}`: give it on the command line")
        if norm not in options or norm in ("help", "config"):
            from heterosearch.registry import unknown_name_message

            known = sorted(n.replace("_", "-") for n in options if n != "help")
            raise ValueError(f"{where}: " + unknown_name_message(f"option of `heterosearch {name}`", str(key), known))
        if norm in out:
            raise ValueError(f"{where}: {key!r} is given twice")
        out[norm] = _checked(where, str(key), value, options[norm])
    return out


def _checked(where: str, key: str, value: Any, param: Any) -> Any:
    """The value if it fits the option's type (YAML's bool is no number, a number no bool)."""
    desc = getattr(param, "type_descriptor", None)
    kind = getattr(desc, "annotation", str)
    if value is None:
        return None  # "not given": the option's own default (None for optional options)
    bad = f"{where}: {key} must be {{}}, got {value!r}"[:300]
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(bad.format("true or false"))
        return value
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise ValueError(bad.format({int: "an integer", float: "a finite number"}.get(kind, "a text value")))
    if kind is int:
        if not isinstance(value, int):
            raise ValueError(bad.format("an integer"))
        return value
    if kind is float:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(bad.format("a finite number"))
        return float(value)
    if getattr(param, "multiple", False):
        raise ValueError(f"{where}: {key} cannot be set from a file")
    return str(value)  # text and paths: a number in YAML (budget: 500000) means its text
