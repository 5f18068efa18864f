"""Checked reading of search-space fields: errors that name the file and the field (torch-free).

Shared by every kind's YAML section (``adapters/<kind>/config.py``) and by ``space/config.py``.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from heterosearch.errors import UserError

# Same as models.sites.ROLES (kept here so space/ stays torch-free; a test ties them).
KNOWN_ROLES = ("q", "k", "v", "qkv", "o", "ffn_gate", "ffn_in", "ffn_out", "ffn_gate_up")
#: fused role -> the roles it stands for (models/roles.py resolves them against a model's sites)
FUSED: dict[str, tuple[str, ...]] = {"qkv": ("q", "k", "v"), "ffn_gate_up": ("ffn_gate", "ffn_in")}


def role_covered(role: str, by: tuple[str, ...] | list[str]) -> bool:
    """Whether ``role`` names a site that roles ``by`` adapt, fused or split either way (qkv vs q, k, v)."""
    if role in by:
        return True
    if role in FUSED:
        return any(part in by for part in FUSED[role])
    return any(role in parts and fused in by for fused, parts in FUSED.items())


class Where:
    """Builds error messages that say which file and which field is wrong."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> UserError:
        return UserError(f"search space {self.source}: {path}: {message}")

    def check_keys(self, path: str, data: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
        if not isinstance(data, dict):
            raise self.fail(path or "top level", f"expected a mapping, got {type(data).__name__}")
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"{path}.{key}" if path else str(key),
                    f"unknown key{_did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}",
                )
        for key in required:
            if key not in data:
                raise self.fail(f"{path}.{key}" if path else key, "missing required key")

    def int_list(self, path: str, value: Any, minimum: int = 0) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected a non-empty list of integers, got {value!r}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise self.fail(path, f"expected integers >= {minimum}, got {v!r}")
        if len(set(value)) != len(value):
            raise self.fail(path, f"duplicate values in {value!r}")
        return tuple(sorted(value))

    def number(self, path: str, value: Any, minimum: float = 0.0, strict: bool = True, maximum: float = 1e300) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):  # NaN passes every comparison below
            raise self.fail(path, f"expected a finite number, got {value!r}")
        if value < minimum or (strict and value == minimum):
            raise self.fail(path, f"expected a number {'>' if strict else '>='} {minimum}, got {value!r}")
        if value > 1e300:  # float() of a huge int overflows
            raise self.fail(path, f"expected a finite number, got {value!r}")
        if value > maximum:
            raise self.fail(path, f"expected a number <= {maximum:g}, got {value!r}")
        return float(value)

    def roles(self, path: str, value: Any) -> tuple[str, ...]:
        roles = self._members(path, value, KNOWN_ROLES, "a non-empty list of roles", "role", "known")
        if len(set(roles)) != len(roles):
            raise self.fail(path, f"duplicate roles in {value!r}")
        return roles

    def role_patterns(self, path: str, value: Any) -> dict[str, str]:
        """``{role: regex}``: known roles, non-empty strings that compile (models/sites.py matches them)."""
        import re

        if not isinstance(value, dict) or not value:
            raise self.fail(path, f"expected a mapping of role -> module-name regex, got {value!r}")
        for role, pattern in value.items():
            if role not in KNOWN_ROLES:
                close = difflib.get_close_matches(str(role), KNOWN_ROLES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(f"{path}.{role}", f"unknown role{hint}; known: {', '.join(KNOWN_ROLES)}")
            if not isinstance(pattern, str) or not pattern.strip():
                raise self.fail(f"{path}.{role}", f"expected a non-empty regular expression, got {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.fail(f"{path}.{role}", f"bad regular expression {pattern!r}: {exc}") from None
        return {str(k): v for k, v in value.items()}

    def choices(self, path: str, value: Any, legal: tuple[str, ...]) -> tuple[str, ...]:
        """A non-empty list of values from ``legal``."""
        return self._members(path, value, legal, f"a non-empty list from {', '.join(legal)}", "value", "legal")

    def _members(self, path: str, value: Any, legal: tuple[str, ...], expected: str, noun: str,
                 listed: str) -> tuple[str, ...]:
        """``value`` as a tuple if it is a non-empty list of members of ``legal`` (errors: ``expected``, ``noun``)."""
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected {expected}, got {value!r}")
        for v in value:
            if v not in legal:
                raise self.fail(path, f"unknown {noun} {v!r}{_did_you_mean(v, legal)}; {listed}: {', '.join(legal)}")
        return tuple(value)


def _did_you_mean(word: Any, legal: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), legal, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
