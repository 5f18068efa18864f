"""Search-space YAML -> validated dataclasses (torch-free).

A space file names itself (``name:``), carries a ``version:`` that is stamped into every
result, and lists one section per adapter kind under ``kinds:``. Every key is checked:
an unknown key or a bad value raises ``UserError`` naming the file and the field. Each
kind's section class comes from the kind itself (``adapters/<kind>/config.py``), through the
section registry ``space.kinds.SECTIONS``; this module names no kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError
from heterosearch.space.calibration import CalibrationSpec
from heterosearch.space.fields import KNOWN_ROLES, Where, role_covered
from heterosearch.space.kinds import SECTIONS

__all__ = ["KIND_SECTIONS", "KNOWN_ROLES", "BaselineSpec", "SearchSpace", "available_spaces", "load_space", "spaces_dir"]


class _SectionView(Mapping[str, type]):
    """kind name -> its YAML section class, read live from the section registry (space/kinds.py)."""

    def __getitem__(self, name: str) -> type:
        if name not in SECTIONS:
            raise KeyError(name)
        return SECTIONS.get(name).section

    def __iter__(self) -> Iterator[str]:
        return iter(SECTIONS.names())

    def __len__(self) -> int:
        return len(SECTIONS)


# One parser per kind section, filled in by the kinds (adapters/<kind>/config.py).
KIND_SECTIONS: Mapping[str, type] = _SectionView()


@dataclass(frozen=True)
class BaselineSpec:
    """The uniform allocation every search is compared with (HeteroLoRA's: LoRA on q and v)."""

    roles: tuple[str, ...] = ("q", "v")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Where, path: str) -> BaselineSpec:
        where.check_keys(path, data, ("roles",), required=("roles",))
        return cls(roles=where.roles(f"{path}.roles", data["roles"]))


@dataclass(frozen=True)
class SearchSpace:
    """A whole search space, as loaded from ``search_spaces/<name>.yaml``."""

    name: str
    version: int
    description: str = ""
    kinds: dict[str, Any] = field(default_factory=dict)
    baseline: BaselineSpec = field(default_factory=BaselineSpec)
    source: str = "<dict>"
    # ``roles:`` in the file: role -> regex searched in a Linear's name within its block
    # (models/sites.py discover_sites). Empty: the built-in naming table decides the sites.
    site_roles: dict[str, str] = field(default_factory=dict)
    # Optional: map proxy scores across kinds with a short training signal (space/calibration.py).
    calibration: CalibrationSpec | None = None

    @property
    def lora(self) -> Any:
        """The per-site LoRA section (adapters/lora/config.py ``LoraSpace``)."""
        if "lora" not in self.kinds:
            raise UserError(f"search space {self.name!r} has no 'lora' section")
        return self.kinds["lora"]

    def to_dict(self) -> dict[str, Any]:
        """The resolved space, as recorded in every run folder."""
        out = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "kinds": {k: _plain(v) for k, v in self.kinds.items()},
            "baseline": _plain(self.baseline),
            "source": self.source,
            **({"roles": dict(self.site_roles)} if self.site_roles else {}),  # absent when unused: old records unchanged
        }
        if self.calibration is not None:  # absent otherwise: spaces without it record what they did before
            out["calibration"] = self.calibration.as_section()
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> SearchSpace:
        where = Where(source)
        where.check_keys("", data, ("name", "version", "description", "kinds", "baseline", "roles", "calibration"),
                         required=("name", "version", "kinds"))
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
        _check_adapted_roles(kinds, where)
        baseline = BaselineSpec.from_dict(data["baseline"], where, "baseline") if "baseline" in data else BaselineSpec()
        site_roles = where.role_patterns("roles", data["roles"]) if "roles" in data else {}
        calibration = CalibrationSpec.from_dict(data["calibration"] or {}, where, "calibration") if "calibration" in data else None
        return cls(name=name, version=version, description=description, kinds=kinds, baseline=baseline, source=source,
                   site_roles=site_roles, calibration=calibration)


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


def _check_adapted_roles(kinds: dict[str, Any], where: Where) -> None:
    """Every kind acts on the sites ``kinds.lora.roles`` names (pipeline/inputs.py ``sites``).

    A bank or pool on a role outside them would be dropped without a word (a space with MoS on
    all six roles and LoRA on q alone searched MoS on q only), so it is an error here instead.
    The baseline's roles are checked where a baseline is planned (pipeline/budget.py).
    """
    if "lora" not in kinds:
        raise where.fail("kinds", "needs a 'lora' section: its roles name the sites the space adapts "
                                  "(ranks [0, 1] keeps per-site LoRA small)")
    adapted = tuple(kinds["lora"].roles)
    for path, roles in [(f"kinds.{k}.roles", getattr(sec, "roles", ())) for k, sec in kinds.items() if k != "lora"]:
        outside = [r for r in roles if not role_covered(r, adapted)]
        if outside:
            raise where.fail(path, f"{', '.join(outside)} not in kinds.lora.roles ({', '.join(adapted)}), "
                                   "the sites the space adapts: add them there")


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
