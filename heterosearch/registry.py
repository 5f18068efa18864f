"""A small name -> object registry shared by adapter kinds, proxies and tasks.

Decorator registration, duplicate names raise, unknown names answer with the closest
match and the list of what is available (lm-evaluation-harness / timm style).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from heterosearch.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a unique name to an object (a class, a function or a spec)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@PROXIES.register("snip")``."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(unknown_name_message(self.what, name, self._items)) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)


def unknown_name_message(what: str, name: str, known: object) -> str:
    """One line: unknown X 'y'; did you mean 'z'? available: a, b, c."""
    names = sorted(known)  # type: ignore[call-overload]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}{hint} (available: {', '.join(names)})"
