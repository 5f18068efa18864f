"""The building blocks of a file schema: typed specs that check a parsed JSON value and say where it fails."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Whole numbers are bounded so numpy (int64) and float conversions downstream never overflow.
INT_LIMIT = 2**63
#: Numbers beyond this are refused too: scaled (x 100 for percent) they must stay finite.
FLOAT_LIMIT = 1e300


class _Mismatch(Exception):
    """A value does not fit its spec: where, and what was expected (caught by ``read_run_file``)."""

    def __init__(self, path: tuple[Any, ...], problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def short(value: Any, limit: int = 40) -> str:
    """A value for an error message: its type for containers, a bounded repr for scalars (never the whole value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return f"an object with {len(value)} field(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int):
        text = str(value) if value.bit_length() < 4000 else "a huge number"
        return text if len(text) <= limit else f"{text[:12]}... ({len(text)} digits)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# -- specs -----------------------------------------------------------------------------------
class Spec:
    """A node of a schema: ``check`` raises ``_Mismatch`` naming the first bad value below ``path``."""

    what = "a value"

    def check(self, value: Any, path: tuple[Any, ...]) -> None:
        """Raise ``_Mismatch`` if ``value`` (found at ``path``) or anything inside it does not fit."""
        self._check(value, path)

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:  # pragma: no cover - every spec overrides
        raise NotImplementedError

    def fail(self, value: Any, path: tuple[Any, ...]) -> None:
        """Raise the mismatch "must be <what>, got <value>" at ``path``."""
        raise _Mismatch(path, f"must be {self.what}, got {short(value)}")


class AnyValue(Spec):
    """Present, any JSON value (a field the code only prints or compares)."""

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:
        return None


class Str(Spec):
    """A JSON string."""

    what = "text"

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:
        if not isinstance(value, str):
            self.fail(value, path)


class Bool(Spec):
    """A JSON true or false."""

    what = "true or false"

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:
        if not isinstance(value, bool):
            self.fail(value, path)


@dataclass
class Int(Spec):
    """A whole number (JSON true/false are not numbers here), within bounds numpy can hold."""

    lo: int = -INT_LIMIT
    hi: int = INT_LIMIT - 1
    what: str = ""

    def __post_init__(self) -> None:
        if not self.what:
            if self.lo == -INT_LIMIT and self.hi == INT_LIMIT - 1:
                self.what = "a whole number"
            elif self.hi == INT_LIMIT - 1:
                self.what = f"a whole number >= {self.lo}"
            else:
                self.what = f"a whole number in [{self.lo}, {self.hi}]"

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            self.fail(value, path)


@dataclass
class Num(Spec):
    """A number; finite unless ``finite=False`` (a field only printed, such as a training loss)."""

    finite: bool = True
    lo: float | None = None
    what: str = ""

    def __post_init__(self) -> None:
        if not self.what:
            bound = "" if self.lo is None else f" >= {self.lo:g}"
            self.what = ("a finite number" if self.finite else "a number") + bound

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(value, path)
        if isinstance(value, int) and abs(value) >= INT_LIMIT:  # numpy would hold it as an object, not a number
            self.fail(value, path)
        if self.finite and not (math.isfinite(value) and abs(value) <= FLOAT_LIMIT):
            self.fail(value, path)
        if self.lo is not None and not value >= self.lo and not math.isnan(value):
            self.fail(value, path)


@dataclass
class Opt(Spec):
    """``inner`` or null."""

    inner: Spec
    what: str = ""

    def __post_init__(self) -> None:
        self.what = self.what or f"{self.inner.what} or null"

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:
        if value is None:
            return
        try:
            self.inner.check(value, path)
        except _Mismatch as exc:
            if exc.path == path:  # the value itself is wrong: say that null is allowed too
                self.fail(value, path)
            raise


@dataclass
class ListOf(Spec):
    """A list whose every item fits ``item``, with ``min_len``..``max_len`` items."""

    item: Spec
    min_len: int = 0
    max_len: int | None = None
    what: str = ""

    def __post_init__(self) -> None:
        if not self.what:
            size = ""
            if self.max_len is not None and self.max_len == self.min_len:
                size = f" of exactly {self.min_len}"
            elif self.min_len:
                size = f" of at least {self.min_len}"
            self.what = f"a list{size} ({self.item.what})"

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:
        too_long = self.max_len is not None and isinstance(value, list) and len(value) > self.max_len
        if not isinstance(value, list) or len(value) < self.min_len or too_long:
            self.fail(value, path)
        for i, item in enumerate(value):
            self.item.check(item, (*path, i))


@dataclass
class MapOf(Spec):
    """An object with free keys (site keys, proxy names, budgets); ``key`` is a regex every key must match."""

    value: Spec
    key: str | None = None
    key_what: str = ""
    min_len: int = 0
    what: str = ""

    def __post_init__(self) -> None:
        self.what = self.what or f"an object of {self.key_what or 'name'} -> {self.value.what}"

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:
        if not isinstance(value, dict) or len(value) < self.min_len:
            self.fail(value, path)
        for k, v in value.items():
            if self.key is not None and not re.fullmatch(self.key, k):
                raise _Mismatch(path, f"has the key {short(k)}, which is not {self.key_what}")
            self.value.check(v, (*path, k))


@dataclass
class Obj(Spec):
    """An object with named fields; ``closed`` refuses fields it does not name (a reader would choke on them)."""

    required: dict[str, Spec] = field(default_factory=dict)
    optional: dict[str, Spec] = field(default_factory=dict)
    closed: bool = False
    what: str = "an object"

    def _check(self, value: Any, path: tuple[Any, ...]) -> None:
        if not isinstance(value, dict):
            self.fail(value, path)
        for name, spec in self.required.items():
            if name not in value:
                raise _Mismatch((*path, name), f"is missing (expected {spec.what})")
            spec.check(value[name], (*path, name))
        for name, spec in self.optional.items():
            if name in value:
                spec.check(value[name], (*path, name))
        if self.closed:
            known = [*self.required, *self.optional]
            extra = [k for k in value if k not in known]
            if extra:
                raise _Mismatch((*path, extra[0]), f"is not a known field here (known: {', '.join(known)})")


