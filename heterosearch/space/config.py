"""Search-space YAML -> validated dataclasses (torch-free).

A space file names itself (``name:``), carries a ``version:`` that is stamped into every
result, and lists one section per adapter kind under ``kinds:``. Every key is checked:
an unknown key or a bad value raises ``UserError`` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heterosearch import recipe
from heterosearch.errors import UserError
from heterosearch.space.scale import LoraScale

KNOWN_ROLES = ("q", "k", "v", "qkv", "o", "ffn_gate", "ffn_in", "ffn_out")


class _Where:
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
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(
                    f"{path}.{key}" if path else str(key),
                    f"unknown key{hint}; allowed: {', '.join(allowed)}",
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
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected a non-empty list of roles, got {value!r}")
        for role in value:
            if role not in KNOWN_ROLES:
                close = difflib.get_close_matches(str(role), KNOWN_ROLES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(path, f"unknown role {role!r}{hint}; known: {', '.join(KNOWN_ROLES)}")
        if len(set(value)) != len(value):
            raise self.fail(path, f"duplicate roles in {value!r}")
        return tuple(value)


@dataclass(frozen=True)
class LoraSpace:
    """Per-site LoRA: every site of ``roles`` gets one rank from ``ranks`` (0 = no adapter)."""

    roles: tuple[str, ...] = ("q", "k", "v", "o", "ffn_in", "ffn_out")
    ranks: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    # The scale rule s(r) (adapters/lora/scale.py); the recipe's unless the space file sets
    # ``lora_alpha`` / ``use_rslora`` (PEFT's meaning) or ``alpha_ratio`` (alpha = k r).
    scaling: LoraScale = field(default_factory=lambda: LoraScale(recipe.SCALE_RULE, recipe.LORA_ALPHA))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: _Where, path: str) -> LoraSpace:
        where.check_keys(path, data, ("roles", "ranks", "alpha_ratio", "lora_alpha", "use_rslora"),
                         required=("roles", "ranks"))
        ranks = where.int_list(f"{path}.ranks", data["ranks"])
        if ranks == (0,):
            raise where.fail(f"{path}.ranks", "needs at least one rank > 0")
        if "alpha_ratio" in data and ("lora_alpha" in data or "use_rslora" in data):
            raise where.fail(f"{path}.alpha_ratio", "give either alpha_ratio or lora_alpha/use_rslora, not both")
        if "alpha_ratio" in data:
            scale = LoraScale("ratio", where.number(f"{path}.alpha_ratio", data["alpha_ratio"], strict=True, maximum=1e4))
        else:
            rs = data.get("use_rslora", recipe.SCALE_RULE == "rslora")
            if not isinstance(rs, bool):
                raise where.fail(f"{path}.use_rslora", f"expected true or false, got {rs!r}")
            alpha = where.number(f"{path}.lora_alpha", data.get("lora_alpha", recipe.LORA_ALPHA), strict=True, maximum=1e4)
            scale = LoraScale("rslora" if rs else "standard", alpha)
        return cls(roles=where.roles(f"{path}.roles", data["roles"]), ranks=ranks, scaling=scale)

    def as_section(self) -> dict[str, Any]:
        """The YAML section that loads back to this space (``from_dict`` keys)."""
        out: dict[str, Any] = {"roles": list(self.roles), "ranks": list(self.ranks)}
        if self.scaling.rule == "ratio":
            out["alpha_ratio"] = self.scaling.alpha
        else:
            out.update(lora_alpha=self.scaling.alpha, use_rslora=self.scaling.rule == "rslora")
        return out


@dataclass(frozen=True)
class BaselineSpec:
    """The uniform allocation every search is compared with (HeteroLoRA's: LoRA on q and v)."""

    roles: tuple[str, ...] = ("q", "v")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: _Where, path: str) -> BaselineSpec:
        where.check_keys(path, data, ("roles",), required=("roles",))
        return cls(roles=where.roles(f"{path}.roles", data["roles"]))


SHORTCUT_TYPES = ("residual_1", "residual_2", "shortcut_sa", "shortcut_ffn")
BANK_VARIANTS = ("share_a", "share_b", "share_ab", "tl5", "tl6")
BANK_MEMBERSHIPS = ("all", "lower", "upper")  # all layers, the lower half, the upper half


def _choice_list(where: _Where, path: str, value: Any, legal: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise where.fail(path, f"expected a non-empty list from {', '.join(legal)}, got {value!r}")
    for v in value:
        if v not in legal:
            close = difflib.get_close_matches(str(v), legal, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise where.fail(path, f"unknown value {v!r}{hint}; legal: {', '.join(legal)}")
    return tuple(value)


@dataclass(frozen=True)
class ShortcutSpace:
    """HeteroLoRA's LoRA-adapted shortcut connections: one rank per (layer, type); 0 = off."""

    types: tuple[str, ...] = SHORTCUT_TYPES
    ranks: tuple[int, ...] = (0, 2, 4, 8)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: _Where, path: str) -> ShortcutSpace:
        where.check_keys(path, data, ("types", "ranks"), required=("ranks",))
        ranks = where.int_list(f"{path}.ranks", data["ranks"])
        return cls(types=_choice_list(where, f"{path}.types", data.get("types", list(SHORTCUT_TYPES)), SHORTCUT_TYPES), ranks=(0, *[r for r in ranks if r]))


@dataclass(frozen=True)
class BankSpace:
    """Shared/tied banks: per role, a rank (0 = no bank), a variant and a layer membership."""

    roles: tuple[str, ...] = ("q", "v")
    variants: tuple[str, ...] = BANK_VARIANTS
    ranks: tuple[int, ...] = (0, 8, 16)
    membership: tuple[str, ...] = BANK_MEMBERSHIPS

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: _Where, path: str) -> BankSpace:
        where.check_keys(path, data, ("roles", "variants", "ranks", "membership"), required=("roles", "ranks"))
        ranks = where.int_list(f"{path}.ranks", data["ranks"])
        return cls(
            roles=where.roles(f"{path}.roles", data["roles"]),
            variants=_choice_list(where, f"{path}.variants", data.get("variants", list(BANK_VARIANTS)), BANK_VARIANTS),
            ranks=(0, *[r for r in ranks if r]),
            membership=_choice_list(where, f"{path}.membership", data.get("membership", list(BANK_MEMBERSHIPS)), BANK_MEMBERSHIPS),
        )


@dataclass(frozen=True)
class MosSpace:
    """Mixture of Shards: per role a pool of equivalent rank r_e (0 = no pool) and a per-site rank."""

    roles: tuple[str, ...] = ("q", "v")
    equivalent_ranks: tuple[int, ...] = (0, 2, 4)
    site_ranks: tuple[int, ...] = (4, 8, 16)
    shards: int = 2
    private_rank: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: _Where, path: str) -> MosSpace:
        where.check_keys(path, data, ("roles", "equivalent_ranks", "site_ranks", "shards", "private_rank"),
                         required=("roles", "equivalent_ranks", "site_ranks"))
        r_e = where.int_list(f"{path}.equivalent_ranks", data["equivalent_ranks"])
        site = where.int_list(f"{path}.site_ranks", data["site_ranks"], minimum=1)
        shards = data.get("shards", 2)
        private = data.get("private_rank", 1)
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise where.fail(f"{path}.shards", f"expected an integer >= 1, got {shards!r}")
        if isinstance(private, bool) or not isinstance(private, int) or private < 0:
            raise where.fail(f"{path}.private_rank", f"expected an integer >= 0, got {private!r}")
        if private > min(site):
            raise where.fail(f"{path}.private_rank", f"must not exceed the smallest site rank {min(site)}, got {private}")
        return cls(roles=where.roles(f"{path}.roles", data["roles"]), equivalent_ranks=(0, *[r for r in r_e if r]),
                   site_ranks=site, shards=shards, private_rank=private)


# One parser per kind section.
KIND_SECTIONS: dict[str, type] = {"lora": LoraSpace, "shortcut": ShortcutSpace, "bank": BankSpace, "mos": MosSpace}


@dataclass(frozen=True)
class SearchSpace:
    """A whole search space, as loaded from ``search_spaces/<name>.yaml``."""

    name: str
    version: int
    description: str = ""
    kinds: dict[str, Any] = field(default_factory=dict)
    baseline: BaselineSpec = field(default_factory=BaselineSpec)
    source: str = "<dict>"

    @property
    def lora(self) -> LoraSpace:
        if "lora" not in self.kinds:
            raise UserError(f"search space {self.name!r} has no 'lora' section")
        return self.kinds["lora"]

    def to_dict(self) -> dict[str, Any]:
        """The resolved space, as recorded in every run folder."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "kinds": {k: _plain(v) for k, v in self.kinds.items()},
            "baseline": _plain(self.baseline),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> SearchSpace:
        where = _Where(source)
        where.check_keys("", data, ("name", "version", "description", "kinds", "baseline"), required=("name", "version", "kinds"))
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise where.fail("name", f"expected a non-empty string, got {name!r}")
        version = data["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise where.fail("version", f"expected an integer >= 1, got {version!r}")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise where.fail("description", f"expected a string, got {description!r}")
        kinds_raw = data["kinds"]
        where.check_keys("kinds", kinds_raw, tuple(KIND_SECTIONS))
        if not kinds_raw:
            raise where.fail("kinds", "needs at least one adapter kind")
        kinds = {k: KIND_SECTIONS[k].from_dict(v, where, f"kinds.{k}") for k, v in kinds_raw.items()}  # type: ignore[attr-defined]
        baseline = BaselineSpec.from_dict(data["baseline"], where, "baseline") if "baseline" in data else BaselineSpec()
        return cls(name=name, version=version, description=description, kinds=kinds, baseline=baseline, source=source)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "as_section"):
        return obj.as_section()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def spaces_dir() -> Path:
    """The shipped ``heterosearch/search_spaces/`` folder: package data, so a wheel carries it too."""
    return Path(__file__).resolve().parent.parent / "search_spaces"


def available_spaces() -> dict[str, Path]:
    return {p.stem: p for p in sorted(spaces_dir().glob("*.yaml"))}


#: Space files are a few hundred bytes; this bounds what the YAML parser is ever given.
MAX_SPACE_BYTES = 1_000_000


def _no_alias_loader() -> Any:
    """A SafeLoader that refuses aliases (``*name``).

    Nested aliases expand exponentially ("billion laughs": nine levels of nine-fold aliases
    are 9^9 strings), and a space file has no use for them.
    """
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "aliases (*name) are not allowed in a search-space file; write the value out", event.start_mark
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a space by shipped name (``lora``) or by path to a YAML file."""
    import yaml

    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        spaces = available_spaces()
        if str(name_or_path) not in spaces:
            from heterosearch.registry import unknown_name_message

            raise UserError(unknown_name_message("search space", str(name_or_path), spaces))
        path = spaces[str(name_or_path)]
    if not path.is_file():
        raise UserError(f"search space file {str(path)!r} does not exist")
    if path.stat().st_size > MAX_SPACE_BYTES:
        raise UserError(f"search space {path}: {path.stat().st_size:,} bytes; a space file is at most {MAX_SPACE_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"search space {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"search space {path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return SearchSpace.from_dict(data, source=path.name)
