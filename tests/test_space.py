"""Budget parsing, the search-space loader and allocations (all torch-free)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heterosearch import recipe
from heterosearch.adapters.lora import LoraSpace
from heterosearch.errors import UserError
from heterosearch.space import (
    KNOWN_ROLES,
    SearchSpace,
    available_spaces,
    format_params,
    load_space,
    lora_params,
    parse_budget,
    spaces_dir,
)
from heterosearch.space.allocation import Allocation, largest_uniform_rank, uniform_allocation
from heterosearch.space.config import KIND_SECTIONS
from heterosearch.space.scale import LoraScale, as_scale

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- budgets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (500000, 500000),
        ("500000", 500000),
        ("500k", 500000),
        ("500K", 500000),
        ("0.5M", 500000),
        ("0.5m", 500000),
        ("1.2e6", 1200000),
        ("1_000", 1000),
        (" 2K ", 2000),
        ("1,000,000", 1000000),
        ("1G", 1_000_000_000),
        ("2b", 2_000_000_000),
        ("1e3", 1000),
        (".5k", 500),
        (2000.0, 2000),
        ("0.001002M", 1002),  # exact decimal: a float product would not be whole
        ("1.000981M", 1000981),
        ("136178.64435M", 136178644350),
        (10**13, 10**13),
    ],
)
def test_parse_budget_accepts(text: Any, expected: int) -> None:
    value = parse_budget(text)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize(
    "text",
    ["abc", "0", "-5", "1.5", "", "   ", "nan", "inf", "-inf", "1.5k5", "5 kk", "k", "0.0001k", "2.0000005M",
     "1e-3", "0k", True, False, 0, -1, 1.5, float("nan"), float("inf"), 10**13 + 1, "2e13", 10**400],
)
def test_parse_budget_rejects(text: Any) -> None:
    with pytest.raises(UserError) as err:
        parse_budget(text)
    assert "budget" in str(err.value) and "\n" not in str(err.value)


def test_parse_budget_messages() -> None:
    with pytest.raises(UserError, match=r"not a whole number of parameters \(1\.5\)"):
        parse_budget("1.5")
    with pytest.raises(UserError, match="examples: 500000, 500k, 0.5M, 1.2e6"):
        parse_budget("abc")
    with pytest.raises(UserError, match="positive"):
        parse_budget("0")
    with pytest.raises(UserError, match="larger than any model"):
        parse_budget("2e13")


@FAST
@given(st.integers(min_value=1, max_value=10**12))
def test_parse_budget_roundtrips_ints(n: int) -> None:
    assert parse_budget(str(n)) == n
    assert parse_budget(n) == n
    assert parse_budget(f"{n:,}") == n
    if n % 1000 == 0:
        assert parse_budget(f"{n / 1000}k") == n
        assert parse_budget(f"{n // 1000}K") == n


@FAST
@given(st.integers(min_value=1, max_value=10**12))
def test_parse_budget_exact_decimal_suffixes(n: int) -> None:
    # "0.001002M" is exactly 1002: the suffix must not go through a binary float product.
    for exp, suffix in ((3, "k"), (6, "M"), (9, "G")):
        text = f"{Decimal(n).scaleb(-exp):f}{suffix}"
        assert parse_budget(text) == n, text


def test_format_and_lora_params() -> None:
    assert format_params(497664) == "497,664"
    assert lora_params(384, 384, 8) == 6144
    assert lora_params(384, 1536, 8) == 15360
    assert lora_params(10, 20, 0) == 0


# ---------------------------------------------------------------- search-space loader


def _valid() -> dict[str, Any]:
    return {
        "name": "t",
        "version": 1,
        "description": "test",
        "kinds": {"lora": {"roles": ["q", "v"], "ranks": [0, 2, 4], "alpha_ratio": 2}},
        "baseline": {"roles": ["q", "v"]},
    }


def _error(data: Any) -> str:
    with pytest.raises(UserError) as err:
        SearchSpace.from_dict(data, source="x.yaml")
    message = str(err.value)
    assert message.startswith("search space x.yaml: ")
    assert "\n" not in message
    return message


SHIPPED = sorted(spaces_dir().glob("*.yaml"))


def test_shipped_spaces_exist() -> None:
    assert [p.name for p in SHIPPED].count("lora.yaml") == 1
    assert set(available_spaces()) == {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_space_loads(path: Path) -> None:
    by_path = load_space(path)
    by_name = load_space(path.stem)
    assert by_path == by_name
    assert by_path.source == path.name
    assert by_path.version >= 1 and by_path.name
    lora = by_path.lora
    assert lora.ranks[0] == 0 and list(lora.ranks) == sorted(set(lora.ranks))
    assert set(lora.roles) <= set(KNOWN_ROLES)
    again = SearchSpace.from_dict({k: v for k, v in by_path.to_dict().items() if k != "source"}, source=path.name)
    assert again == by_path


def test_shipped_lora_space_values() -> None:
    space = load_space("lora")
    assert space.name == "lora" and space.version == 2
    assert space.lora.roles == ("q", "k", "v", "o", "ffn_in", "ffn_out")
    assert space.lora.ranks == (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
    assert space.lora.scaling == LoraScale("rslora", 2 * 2**0.5)
    assert space.lora.scaling.at(2) == pytest.approx(2.0)  # the rank the learning rate was swept at
    assert space.baseline.roles == ("q", "v")
    d = space.to_dict()
    assert d["kinds"]["lora"]["ranks"] == list(space.lora.ranks)
    assert d["baseline"] == {"roles": ["q", "v"]}


def test_valid_dict_loads_with_defaults() -> None:
    space = SearchSpace.from_dict(_valid())
    assert space.lora == LoraSpace(roles=("q", "v"), ranks=(0, 2, 4), scaling=LoraScale("ratio", 2.0))
    minimal = {"name": "m", "version": 3, "kinds": {"lora": {"roles": ["v"], "ranks": [4, 0, 1]}}}
    space = SearchSpace.from_dict(minimal)
    assert space.lora.ranks == (0, 1, 4)  # sorted
    assert space.lora.scaling == LoraScale(recipe.SCALE_RULE, recipe.LORA_ALPHA)  # the recipe's
    assert space.baseline.roles == ("q", "v")
    assert space.description == ""


def test_unknown_top_level_key() -> None:
    data = _valid()
    data["kind"] = {}
    msg = _error(data)
    assert "kind: unknown key" in msg and "did you mean 'kinds'?" in msg
    assert "allowed: name, version, description, kinds, baseline" in msg


def test_unknown_key_inside_lora_names_field_and_suggests() -> None:
    data = _valid()
    data["kinds"]["lora"]["rank"] = [0, 1]
    msg = _error(data)
    assert "kinds.lora.rank: unknown key (did you mean 'ranks'?)" in msg
    data = _valid()
    data["kinds"]["lora"]["alpha_ration"] = 2
    assert "kinds.lora.alpha_ration: unknown key (did you mean 'alpha_ratio'?)" in _error(data)
    data = _valid()
    data["kinds"]["lora"]["zzzz"] = 1
    msg = _error(data)
    assert "kinds.lora.zzzz: unknown key;" in msg and "did you mean" not in msg


def test_unknown_kind() -> None:
    data = _valid()
    data["kinds"]["lorra"] = {}
    assert "kinds.lorra: unknown key (did you mean 'lora'?)" in _error(data)
    data["kinds"] = {}
    assert "kinds: needs at least one adapter kind" in _error(data)


@pytest.mark.parametrize(
    ("ranks", "fragment"),
    [
        ("0,1,2", "expected a non-empty list of integers"),
        (4, "expected a non-empty list of integers"),
        ([], "expected a non-empty list of integers"),
        ([0, -1, 2], "expected integers >= 0, got -1"),
        ([0, 1.5], "expected integers >= 0, got 1.5"),
        ([0, True], "expected integers >= 0, got True"),
        ([0, "4"], "expected integers >= 0, got '4'"),
        ([0, 2, 2], "duplicate values in [0, 2, 2]"),
        ([0], "needs at least one rank > 0"),
    ],
)
def test_bad_ranks(ranks: Any, fragment: str) -> None:
    data = _valid()
    data["kinds"]["lora"]["ranks"] = ranks
    msg = _error(data)
    assert "kinds.lora.ranks: " in msg and fragment in msg


def test_bad_roles() -> None:
    data = _valid()
    data["kinds"]["lora"]["roles"] = ["q", "value"]
    msg = _error(data)
    assert "kinds.lora.roles: unknown role 'value'" in msg
    assert "known: q, k, v, qkv, o, ffn_gate, ffn_in, ffn_out" in msg
    data["kinds"]["lora"]["roles"] = ["q", "ffn_inn"]
    assert "unknown role 'ffn_inn' (did you mean 'ffn_in'?)" in _error(data)
    data["kinds"]["lora"]["roles"] = ["q", "q"]
    assert "kinds.lora.roles: duplicate roles" in _error(data)
    data["kinds"]["lora"]["roles"] = "q"
    assert "kinds.lora.roles: expected a non-empty list of roles" in _error(data)
    data = _valid()
    data["baseline"] = {"roles": ["qq"]}
    assert "baseline.roles: unknown role 'qq' (did you mean 'q'?)" in _error(data)
    data["baseline"] = {"role": ["q"]}
    assert "baseline.role: unknown key (did you mean 'roles'?)" in _error(data)


@pytest.mark.parametrize("version", ["1", 1.0, True, 0, -2, None, [1]])
def test_version_must_be_a_positive_int(version: Any) -> None:
    data = _valid()
    data["version"] = version
    assert f"version: expected an integer >= 1, got {version!r}" in _error(data)


@pytest.mark.parametrize("alpha", [0, -1, "2", True, None, float("nan"), float("inf"), 10**400])
def test_bad_alpha_ratio(alpha: Any) -> None:
    data = _valid()
    data["kinds"]["lora"]["alpha_ratio"] = alpha
    assert "kinds.lora.alpha_ratio: expected a" in _error(data)


@pytest.mark.parametrize("alpha", [0, -1, "2", True, None, float("nan"), float("inf"), 10**400, 1e5])
def test_bad_lora_alpha(alpha: Any) -> None:
    data = _valid()
    del data["kinds"]["lora"]["alpha_ratio"]
    data["kinds"]["lora"]["lora_alpha"] = alpha
    assert "kinds.lora.lora_alpha: expected a" in _error(data)


def test_scale_keys() -> None:
    data = _valid()
    data["kinds"]["lora"]["lora_alpha"] = 8
    assert "give either alpha_ratio or lora_alpha/use_rslora, not both" in _error(data)
    del data["kinds"]["lora"]["alpha_ratio"]
    data["kinds"]["lora"]["use_rslora"] = "yes"
    assert "kinds.lora.use_rslora: expected true or false, got 'yes'" in _error(data)
    data["kinds"]["lora"]["use_rslora"] = False
    assert SearchSpace.from_dict(data).lora.scaling == LoraScale("standard", 8.0)
    data["kinds"]["lora"]["use_rslora"] = True
    assert SearchSpace.from_dict(data).lora.scaling == LoraScale("rslora", 8.0)


def test_scale_rules() -> None:
    # rslora: s = alpha / sqrt(r); standard: alpha / r; ratio: constant. alpha_at(r) * ... = s r.
    assert LoraScale("rslora", 4.0).at(4) == 2.0 and LoraScale("rslora", 4.0).alpha_at(4) == 8.0
    assert LoraScale("standard", 8.0).at(4) == 2.0
    assert LoraScale("ratio", 2.0).at(1) == LoraScale("ratio", 2.0).at(64) == 2.0
    assert as_scale(3.0) == LoraScale("ratio", 3.0) and as_scale(LoraScale("rslora", 1.0)) == LoraScale("rslora", 1.0)
    for bad in ({"rule": "rslora"}, {"rule": "x", "alpha": 1}, {"rule": "rslora", "alpha": "1"},
                {"rule": "rslora", "alpha": float("inf")}, [1], {"rule": "rslora", "alpha": 1, "extra": 0}):
        with pytest.raises(ValueError):
            LoraScale.from_dict(bad)
    with pytest.raises(ValueError):
        LoraScale("rslora", 1.0).at(0)


def test_missing_and_mistyped_fields() -> None:
    for key in ("name", "version", "kinds"):
        data = _valid()
        del data[key]
        assert f"{key}: missing required key" in _error(data)
    data = _valid()
    del data["kinds"]["lora"]["ranks"]
    assert "kinds.lora.ranks: missing required key" in _error(data)
    data = _valid()
    data["name"] = "  "
    assert "name: expected a non-empty string" in _error(data)
    data = _valid()
    data["description"] = 3
    assert "description: expected a string, got 3" in _error(data)
    assert "top level: expected a mapping, got list" in _error([1, 2])
    assert "top level: expected a mapping, got NoneType" in _error(None)
    data = _valid()
    data["kinds"]["lora"] = [1]
    assert "kinds.lora: expected a mapping, got list" in _error(data)


def test_no_lora_section_property() -> None:
    space = SearchSpace(name="n", version=1)
    with pytest.raises(UserError, match="has no 'lora' section"):
        _ = space.lora


def test_load_space_files(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\nversion: 2\nkinds:\n  lora:\n    roles: [q, v]\n    ranks: [0, 8]\n")
    space = load_space(good)
    assert space.name == "mine" and space.version == 2 and space.source == "mine.yaml"
    assert space.lora.ranks == (0, 8)

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nversion: 1\nkinds:\n  lora:\n    roles: [q, v\n    ranks: [0, 8]\n")
    with pytest.raises(UserError) as err:
        load_space(bad)
    msg = str(err.value)
    assert msg.startswith(f"search space {bad}: not valid YAML at line ")
    assert "\n" not in msg

    tabs = tmp_path / "tabs.yaml"
    tabs.write_text("name: t\n\tversion: 1\n")
    with pytest.raises(UserError, match="not valid YAML at line 2"):
        load_space(tabs)

    field = tmp_path / "field.yaml"
    field.write_text("name: f\nversion: 1\nkinds:\n  lora:\n    roles: [q]\n    ranks: [0, 8]\n    rnaks: [1]\n")
    expected = r"^search space field\.yaml: kinds\.lora\.rnaks: unknown key \(did you mean 'ranks'\?\)"
    with pytest.raises(UserError, match=expected):
        load_space(field)

    with pytest.raises(UserError, match="does not exist"):
        load_space(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match=r"unknown search space 'lroa'; did you mean 'lora'\?"):
        load_space("lroa")


# Any JSON/YAML-like value.
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
ALLOWED = {
    "": {"name", "version", "description", "kinds", "baseline"},
    "kinds": set(KIND_SECTIONS),
    "kinds.lora": {"roles", "ranks", "alpha_ratio", "lora_alpha", "use_rslora"},
    "kinds.shortcut": {"types", "ranks"},
    "kinds.bank": {"roles", "variants", "ranks", "membership"},
    "kinds.mos": {"roles", "equivalent_ranks", "site_ranks", "shards", "private_rank"},
    "baseline": {"roles"},
}


def _valid_all_kinds() -> dict[str, Any]:
    data = _valid()
    data["kinds"].update(
        shortcut={"ranks": [0, 2]},
        bank={"roles": ["q"], "ranks": [0, 8]},
        mos={"roles": ["v"], "equivalent_ranks": [0, 2], "site_ranks": [4, 8]},
    )
    return data


def test_all_kinds_base_is_valid() -> None:
    space = SearchSpace.from_dict(_valid_all_kinds())
    assert sorted(space.kinds) == ["bank", "lora", "mos", "shortcut"]


def test_kind_roles_must_be_adapted_sites() -> None:
    """A pool or bank on a role the lora section does not adapt would be dropped silently at run time."""
    data = _valid_all_kinds()
    data["kinds"]["mos"]["roles"] = ["v", "ffn_in", "o"]
    msg = _error(data)
    assert "kinds.mos.roles: ffn_in, o not in kinds.lora.roles (q, v)" in msg
    data = _valid_all_kinds()
    data["kinds"]["bank"]["roles"] = ["k"]
    assert "kinds.bank.roles: k not in kinds.lora.roles" in _error(data)
    # fused either way round names the same site (models/roles.py resolves it against the model)
    data = _valid_all_kinds()
    data["kinds"]["lora"]["roles"] = ["qkv"]
    data["kinds"]["bank"]["roles"] = ["q", "k"]
    data["kinds"]["mos"]["roles"] = ["v"]
    assert SearchSpace.from_dict(data).kinds["bank"].roles == ("q", "k")
    data["kinds"]["lora"]["roles"] = ["q", "v"]
    data["kinds"]["mos"]["roles"] = ["qkv"]
    data["kinds"]["bank"]["roles"] = ["q"]
    assert SearchSpace.from_dict(data).kinds["mos"].roles == ("qkv",)


def test_lora_section_is_required() -> None:
    data = _valid_all_kinds()
    del data["kinds"]["lora"]
    assert "kinds: needs a 'lora' section" in _error(data)


@FAST
@given(
    where=st.sampled_from(sorted(ALLOWED)),
    key=st.text(max_size=12) | st.integers() | st.none() | st.booleans(),
    value=JUNK,
)
def test_extra_junk_key_is_always_a_user_error(where: str, key: Any, value: Any) -> None:
    if key in ALLOWED[where]:
        return
    data = _valid_all_kinds()
    target = data
    for part in filter(None, where.split(".")):
        target = target[part]
    target[key] = value
    with pytest.raises(UserError) as err:
        SearchSpace.from_dict(data, source="junk.yaml")
    assert "unknown key" in str(err.value)
    expected_path = f"{where}.{key}" if where else str(key)
    assert f": {expected_path}: unknown key" in str(err.value)


@FAST
@given(data=st.dictionaries(st.sampled_from(sorted(ALLOWED[""])) | st.text(max_size=5), JUNK, max_size=6))
def test_random_dicts_never_crash(data: dict[Any, Any]) -> None:
    try:
        space = SearchSpace.from_dict(data)
    except UserError:
        return
    assert isinstance(space, SearchSpace)  # pragma: no cover - random dicts are (almost) never valid


@FAST
@given(path=st.sampled_from(["name", "version", "description", "kinds", "baseline", "kinds.lora",
                             "kinds.lora.roles", "kinds.lora.ranks", "kinds.lora.alpha_ratio", "kinds.lora.lora_alpha", "kinds.lora.use_rslora",
                             "baseline.roles"]),
       value=JUNK)
def test_random_field_values_raise_user_error_or_load(path: str, value: Any) -> None:
    data = copy.deepcopy(_valid())
    *parents, last = path.split(".")
    target = data
    for part in parents:
        target = target[part]
    target[last] = value
    try:
        SearchSpace.from_dict(data)
    except UserError as exc:
        assert path.split(".")[0] in str(exc)


# ---------------------------------------------------------------- allocations


@dataclass(frozen=True)
class FakeSite:
    key: str
    role: str
    layer: int
    d_in: int
    d_out: int


SITES = {
    s.key: s
    for s in [
        FakeSite("L0.q", "q", 0, 32, 32),
        FakeSite("L0.v", "v", 0, 32, 16),
        FakeSite("L0.ffn_in", "ffn_in", 0, 32, 64),
        FakeSite("L1.q", "q", 1, 32, 32),
        FakeSite("L1.v", "v", 1, 32, 16),
        FakeSite("L1.ffn_out", "ffn_out", 1, 64, 32),
    ]
}


def test_allocation_params_are_hand_sums() -> None:
    alloc = Allocation(lora={"L0.q": 4, "L0.v": 2, "L1.ffn_out": 8, "L1.q": 0})
    assert alloc.lora == {"L0.q": 4, "L0.v": 2, "L1.ffn_out": 8}  # rank 0 dropped
    assert alloc.params(SITES) == 4 * (32 + 32) + 2 * (32 + 16) + 8 * (64 + 32) == 1120
    assert Allocation().params(SITES) == 0 and Allocation().is_empty()
    assert not alloc.is_empty()
    assert Allocation(lora={"L0.q": 0}).is_empty()
    with pytest.raises(UserError, match="names site 'L9.q'"):
        Allocation(lora={"L9.q": 1}).params(SITES)


def test_allocation_dict_roundtrip_and_describe() -> None:
    alloc = Allocation(lora={"L1.v": 2, "L0.q": 4, "L0.ffn_in": 1})
    assert Allocation.from_dict(alloc.to_dict()) == alloc
    assert alloc.to_dict() == {"lora": {"L1.v": 2, "L0.q": 4, "L0.ffn_in": 1}}
    assert alloc.describe(SITES.values()) == "L0: q=4 ffn_in=1\nL1: v=2"
    assert Allocation().describe(SITES.values()) == "(empty)"
    assert Allocation.from_dict({}) == Allocation()


@pytest.mark.parametrize(
    "data",
    [
        {"lora": {"L0.q": -1}},
        {"lora": {"L0.q": 1.5}},
        {"lora": {"L0.q": "4"}},
        {"lora": {"L0.q": True}},
        {"lora": {"L0.q": None}},
        {"lora": [("L0.q", 4)]},
        {"lora": 4},
        {"lora": {}, "mos": {}},
    ],
)
def test_allocation_from_dict_rejects(data: dict[str, Any]) -> None:
    with pytest.raises(UserError):
        Allocation.from_dict(data)


def test_uniform_allocation_and_largest_uniform_rank() -> None:
    sites = list(SITES.values())
    qv = uniform_allocation(sites, ["q", "v"], 4)
    assert qv.lora == {"L0.q": 4, "L0.v": 4, "L1.q": 4, "L1.v": 4}
    per_rank = (32 + 32) + (32 + 16) + (32 + 32) + (32 + 16)  # 224
    assert qv.params(SITES) == 4 * per_rank
    assert largest_uniform_rank(sites, ["q", "v"], 224 * 5) == 5
    assert largest_uniform_rank(sites, ["q", "v"], 224 * 5 - 1) == 4
    assert largest_uniform_rank(sites, ["q", "v"], 223) == 0
    assert largest_uniform_rank(sites, ["q", "v"], 224 * 5, ranks=[0, 1, 2, 4, 8]) == 4
    assert largest_uniform_rank(sites, ["q", "v"], 224 * 8, ranks=[0, 1, 2, 4, 8]) == 8
    assert largest_uniform_rank(sites, ["q", "v"], 100, ranks=[0, 1, 2]) == 0
    assert largest_uniform_rank(sites, ["qkv"], 10**9) == 0  # no site of that role
    for budget in (0, 1, 500, 1000, 3000):
        r = largest_uniform_rank(sites, ["q", "v"], budget)
        assert uniform_allocation(sites, ["q", "v"], r).params(SITES) <= budget
        assert uniform_allocation(sites, ["q", "v"], r + 1).params(SITES) > budget
    # Never above full rank (the smallest min(d_in, d_out) of those sites, 16 for v here): an
    # absurd budget must not build absurd tensors, and a higher rank adds nothing.
    assert largest_uniform_rank(sites, ["q", "v"], 10**6) == 16 == largest_uniform_rank(sites, ["q", "v"], 10**12)
