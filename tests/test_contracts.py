"""One contract suite over every registered adapter kind and every registered proxy.

Why: the kind (and the proxy) is the unit of extension. The parameters below are read from the
registries at collection time, so a new kind or proxy is held to every contract the moment it
registers (Optuna runs one suite over all its samplers the same way). A registered kind without
example allocations (its ``examples.py``) fails loudly instead of going untested.

Everything runs on a tiny random BERT (hidden 32, 2 layers, 4 heads, FFN 64; tests/conftest.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import heterosearch
from heterosearch.adapters import adapter_state_dict, apply_allocation, count_adapter_params, head_parameters
from heterosearch.adapters.kinds import ADAPTER_KINDS, shared_store
from heterosearch.export import read_allocation, write_allocation
from heterosearch.export.loader import save_adapters
from heterosearch.models import Site, discover_sites, sites_by_key
from heterosearch.proxies import PROXIES, Scores, score_candidates
from heterosearch.proxies.base import SiteState
from heterosearch.proxies.kinds import score_kinds
from heterosearch.space.allocation import Allocation
from heterosearch.space.config import KIND_SECTIONS, SearchSpace

pytestmark = pytest.mark.usefixtures("one_thread_module")

Model = Callable[..., Any]
Batches = list[dict[str, torch.Tensor]]

SCALING = 2.0
ADAPTER_PREFIX = "hs_"
# Per-site LoRA is a registered kind like the others; it is listed first because the proxy
# contracts read its scores from Scores.curves (every other kind's from Scores.kinds).
LORA = "lora"
KINDS: list[str] = [LORA, *(k for k in ADAPTER_KINDS.names() if k != LORA)]
PROXY_NAMES: list[str] = PROXIES.names()


@dataclass(frozen=True)
class Case:
    """One allocation of one kind on the tiny 2-layer BERT (q/k/v/o: 32 -> 32, ffn_in 32 -> 64, ffn_out 64 -> 32)."""

    kind: str
    name: str
    elements: tuple[Any, ...] = ()  # instances of ADAPTER_KINDS.get(kind).element

    def allocation(self) -> Allocation:
        """The case as the pipeline stores it (LoRA as {site: rank}, other kinds as element dicts)."""
        return Allocation.from_elements({self.kind: self.elements})


def _examples() -> tuple[dict[str, list[Case]], dict[str, dict[str, Any]]]:
    """Each registered kind's example allocations and space section, from its ``examples.py``.

    A new kind adds ``adapters/<kind>/examples.py`` (its contract tests fail until it does).
    """
    cases: dict[str, list[Case]] = {}
    sections: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        spec = ADAPTER_KINDS.get(kind)
        try:
            module = spec.module("examples")
        except ModuleNotFoundError as exc:
            if exc.name != f"{spec.package}.examples":
                raise
            continue
        cases[kind] = [Case(kind, name, tuple(elements)) for name, elements in module.CASES.items()]
        sections[kind] = module.SPACE_SECTION
    return cases, sections


# Example allocations per kind, and the search-space section of each kind that the proxy
# contracts score (space/config.py KIND_SECTIONS).
EXAMPLES, SPACE_SECTIONS = _examples()


def _kind_cases() -> list[Any]:
    """Every example case of every kind; a registered kind with no example becomes a failing case."""
    params = []
    for kind in KINDS:
        cases = EXAMPLES.get(kind) or [Case(kind, f"{kind}-missing-example")]
        params += [pytest.param(c, id=c.name) for c in cases]
    return params


KIND_CASES = _kind_cases()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETEROSEARCH_QUIET", "1")


# ---------------------------------------------------------------- helpers


def build(case: Case, make: Model, seed: int = 0) -> tuple[nn.Module, list[Site], Allocation]:
    """The tiny BERT with ``case`` applied the way the pipeline does it (``apply_allocation``)."""
    if not case.elements:
        pytest.fail(f"adapter kind {case.kind!r} is registered but tests/test_contracts.py has no EXAMPLES entry")
    model = make()
    sites = discover_sites(model)
    alloc = case.allocation()
    apply_allocation(model, sites, alloc, scaling=SCALING, seed=seed)
    return model.eval(), sites, alloc


def outputs(model: nn.Module, batches: Batches) -> list[torch.Tensor]:
    """Logits and every layer's hidden states, per batch.

    Hidden states too: at BERT's init (std 0.02) the classifier shrinks any change ~100-fold, so a
    wrong delta of 1e-2 can hide below 1e-6 in the logits; the unit-scale hidden states show it.
    """
    out = []
    with torch.no_grad():
        for b in batches:
            result = model(**{k: v for k, v in b.items() if k != "labels"}, output_hidden_states=True)
            out += [result.logits, *result.hidden_states]
    return out


def is_adapter(name: str) -> bool:
    """Adapter tensors are found by their ``hs_`` prefix, as in ``adapters.inject``."""
    return name.rpartition(".")[2].startswith(ADAPTER_PREFIX)


def trainable_adapters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable adapter tensors, each once (``named_parameters`` drops repeated tensors)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad and is_adapter(n)}


@torch.no_grad()
def perturb(model: nn.Module, seed: int = 0) -> None:
    """Move every trainable tensor (adapters and head) off its init: B = 0 there kills some gradients."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def kind_prefix(kind: str) -> str:
    """The kind's own ``hs_<kind>_`` prefix, from the registry."""
    return ADAPTER_KINDS.get(kind).prefix


# ---------------------------------------------------------------- coverage of the registries


def test_every_registered_kind_and_proxy_has_what_the_contracts_need() -> None:
    """A kind registered without an example or a space section is a gap in this suite, said here in one line."""
    assert KINDS[0] == LORA and len(KINDS) == len(set(KINDS)) >= 4
    assert not [k for k in KINDS if not EXAMPLES.get(k)], "add an example allocation to EXAMPLES"
    assert not [k for k in KINDS if k not in SPACE_SECTIONS], "add a search-space section to SPACE_SECTIONS"
    assert set(EXAMPLES) <= set(KINDS), "EXAMPLES names a kind that is no longer registered"
    assert set(PROXY_NAMES) >= {"grad_norm", "snip", "spectral", "synflow"}


# ---------------------------------------------------------------- kind contracts


@pytest.mark.parametrize("case", KIND_CASES)
def test_init_computes_exactly_the_base_model(case: Case, tiny_bert: Model, tiny_batches: Batches) -> None:
    """Adding an adapter must not change the model before training (B = 0 or equivalent)."""
    base = outputs(tiny_bert(), tiny_batches)
    model, _, _ = build(case, tiny_bert)
    assert count_adapter_params(model) > 0, "the example instantiated no adapter"
    for got, want in zip(outputs(model, tiny_batches), base, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", KIND_CASES)
def test_counted_params_equal_trainable_adapter_params(case: Case, tiny_bert: Model) -> None:
    """The budget is charged by formula; it must be what the instantiated model really trains."""
    model, sites, alloc = build(case, tiny_bert)
    counted = alloc.params(sites_by_key(sites))  # the budget's formula (space/allocation.py)
    assert counted > 0
    # the kind's own count (registry) agrees with the allocation's: one counting path for every kind, LoRA too
    assert ADAPTER_KINDS.get(case.kind).params(sites, list(case.elements)) == counted
    assert count_adapter_params(model) == counted
    trainable = trainable_adapters(model)
    assert sum(p.numel() for p in trainable.values()) == counted
    # Shared tensors once: every adapter tensor has one name, and no other copy hides under a second one.
    names = [n for n, _ in model.named_parameters(remove_duplicate=False) if is_adapter(n)]
    assert len(names) == len(trainable), f"adapter tensors named more than once: {sorted(set(names) - set(trainable))}"
    # Only adapters and the head train, and every adapter tensor / buffer carries the kind's prefix.
    head = set(head_parameters(model))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(trainable) | head
    prefix = kind_prefix(case.kind)
    tensors = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert all(n.rpartition(".")[2].startswith(prefix) for n in tensors if is_adapter(n)), prefix


@pytest.mark.parametrize("case", KIND_CASES)
def test_task_loss_reaches_every_adapter_tensor(case: Case, tiny_bert: Model, tiny_batches: Batches) -> None:
    """A tensor the loss cannot reach is budget spent on nothing."""
    model, _, _ = build(case, tiny_bert)
    perturb(model)
    model(**tiny_batches[0]).loss.backward()
    dead = [n for n, p in trainable_adapters(model).items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient from the task loss: {dead}"


@pytest.mark.parametrize("case", KIND_CASES)
def test_every_member_reaches_its_shared_tensors(case: Case, tiny_bert: Model) -> None:
    """A loss on one member site's output alone gives every shared tensor of its element a gradient."""
    model, sites, _ = build(case, tiny_bert)
    shared = [e for e in case.elements if hasattr(e, "store_name")]  # elements whose tensors live in shared_store
    if not shared:
        pytest.skip(f"{case.kind}: no tensor is shared across sites")
    perturb(model)
    g = torch.Generator().manual_seed(1)
    for element in shared:
        tensors = dict(shared_store(model)[element.store_name].named_parameters())
        members = [s for s in sites if s.role == element.role and s.layer in element.layers]
        assert tensors and len(members) == len(element.layers) >= 2
        for site in members:
            model.zero_grad(set_to_none=True)
            x = torch.randn(3, site.d_in, generator=g)
            (model.get_submodule(site.name)(x) * torch.randn(3, site.d_out, generator=g)).sum().backward()
            dead = [n for n, p in tensors.items() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not dead, f"{element.key}: member {site.key} gives no gradient to {dead}"


@pytest.mark.parametrize("case", KIND_CASES)
def test_elements_round_trip_through_json(case: Case, tiny_bert: Model, tmp_path: Path) -> None:
    """Allocations travel as JSON (allocation.json, study storage): nothing may be lost on the way."""
    _, sites, alloc = build(case, tiny_bert)
    for element in case.elements:
        assert type(element) is ADAPTER_KINDS.get(case.kind).element
        assert type(element).from_dict(json.loads(json.dumps(element.to_dict()))) == element
    assert Allocation.from_dict(json.loads(json.dumps(alloc.to_dict()))) == alloc
    write_allocation(tmp_path / "allocation.json", alloc, sites_by_key(sites), SCALING)
    assert read_allocation(tmp_path / "allocation.json")[0] == alloc


@pytest.mark.parametrize("case", KIND_CASES)
def test_save_then_load_gives_identical_logits(
    case: Case, tiny_bert: Model, tiny_batches: Batches, tmp_path: Path
) -> None:
    """An exported adapter must rebuild to the very model that was trained, whatever the init seed."""
    model, sites, alloc = build(case, tiny_bert, seed=0)
    perturb(model)  # non-trivial adapters and head: a load that misses any tensor shows
    before = outputs(model, tiny_batches)
    moved = (before[-1] - outputs(tiny_bert(), tiny_batches)[-1]).abs().max()  # last hidden states: no head there
    assert moved > 1e-4, f"the perturbed adapters barely change the model ({moved:.1e}): the round trip proves little"
    write_allocation(tmp_path / "allocation.json", alloc, sites_by_key(sites), SCALING)
    save_adapters(model, tmp_path)
    # The base weights are not saved, so the base is rebuilt alike; the adapters' init seed differs.
    fresh = heterosearch.load_adapters(tiny_bert(), tmp_path, seed=123).eval()
    for got, want in zip(outputs(fresh, tiny_batches), before, strict=True):
        assert torch.equal(got, want)
    saved, loaded = adapter_state_dict(model), adapter_state_dict(fresh)
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert count_adapter_params(fresh) == count_adapter_params(model)


@pytest.mark.parametrize("case", KIND_CASES)
def test_merge_and_unload_keeps_the_outputs(case: Case, tiny_bert: Model, tiny_batches: Batches) -> None:
    """Merging folds every linear adapter into its weight: same outputs, a plain model left (shortcuts stay)."""
    from heterosearch.adapters.merge import is_mergeable, merge_and_unload, remaining_shortcuts

    model, _, _ = build(case, tiny_bert, seed=0)
    perturb(model)
    before = outputs(model, tiny_batches)
    merge_and_unload(model)
    for got, want in zip(outputs(model, tiny_batches), before, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not any(is_mergeable(m) for m in model.modules())
    if case.kind == "shortcut":
        assert remaining_shortcuts(model) > 0  # documented: a shortcut is not a map of one weight
    else:
        assert set(model.state_dict()) == set(tiny_bert().state_dict())  # a plain transformers model again


# ---------------------------------------------------------------- proxy contracts


def contract_space() -> SearchSpace:
    """One space with a section for every registered kind the space format knows."""
    kinds = {k: SPACE_SECTIONS[k] for k in KINDS if k in SPACE_SECTIONS and k in KIND_SECTIONS}
    return SearchSpace.from_dict({"name": "contracts", "version": 1, "kinds": kinds})


def score(model: nn.Module, proxy: str, batches: Batches, seed: int = 0) -> Scores:
    """Score as ``pipeline.stage_score`` does: per-site LoRA curves, then the other kinds from the same passes."""
    space = contract_space()
    sites = discover_sites(model)
    grads: dict[str, Any] = {}
    scores = score_candidates(
        model, sites, batches, [proxy], r_max=max(space.lora.ranks), scaling=space.lora.scaling, seed=seed,
        keep_grads=grads,
    )
    scores.kinds, scores.undefined = score_kinds(model, sites, batches, space, grads, [proxy], seed)
    return scores


def leaves(obj: Any) -> Iterator[float]:
    """Every number in nested dicts / lists of scores."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from leaves(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from leaves(v)
    else:
        yield float(obj)


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything scoring must leave alone: tensors bit for bit, requires_grad, .grad, train/eval modes."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: p.grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
    }


@pytest.mark.parametrize("proxy", PROXY_NAMES)
def test_every_score_is_finite(proxy: str, tiny_bert: Model, tiny_batches: Batches) -> None:
    """A NaN or inf score would rank candidates arbitrarily."""
    scores = score(tiny_bert(), proxy, tiny_batches)
    values = list(leaves(scores.curves[proxy])) + list(leaves(scores.kinds.get(proxy, {})))
    assert values and all(math.isfinite(v) for v in values)


@pytest.mark.parametrize("proxy", PROXY_NAMES)
def test_curve_is_homogeneous_of_its_declared_scale_degree(proxy: str) -> None:
    """The scorer evaluates a curve at s = 1 and multiplies rank r's score by s(r) ** scale_degree,
    which is exact only if curve(s) = s ** degree * curve(1) (rank-dependent s, space/scale.py)."""
    kind = PROXIES.get(proxy)()
    gen = torch.Generator().manual_seed(0)
    G, A, B = (torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in ((12, 10), (4, 10), (12, 4)))
    at_one = kind.curve(SiteState(G, A, B, 1.0))
    at_three = kind.curve(SiteState(G, A, B, 3.0))
    assert at_one.shape == (5,)
    torch.testing.assert_close(at_three, at_one * 3.0**kind.scale_degree)


@pytest.mark.parametrize("proxy", PROXY_NAMES)
def test_same_seed_gives_identical_scores(proxy: str, tiny_bert: Model, tiny_batches: Batches) -> None:
    """Scores are cached in scores.json and searches are resumed: the seed alone must decide them."""
    model, twin = tiny_bert(), tiny_bert()  # tiny_bert() reseeds torch's global generator ...
    first = score(model, proxy, tiny_batches)
    torch.manual_seed(12345)  # ... so move it: only the ``seed`` argument may decide the scores
    again = score(twin, proxy, tiny_batches)
    assert first.curves == again.curves
    assert first.kinds == again.kinds
    assert first.undefined == again.undefined


@pytest.mark.parametrize("proxy", PROXY_NAMES)
def test_scoring_leaves_the_model_bit_identical(proxy: str, tiny_bert: Model, tiny_batches: Batches) -> None:
    """The scored model is reused for training (pipeline.stage_score): scoring must leave no trace."""
    model = tiny_bert().train()  # scoring switches to eval internally and must switch back
    before = snapshot(model)
    score(model, proxy, tiny_batches)
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    changed = [k for k, v in before["state"].items() if not (v.dtype == after["state"][k].dtype
                                                             and torch.equal(v, after["state"][k]))]
    assert not changed, f"scoring changed {changed}"
    assert before["requires_grad"] == after["requires_grad"]
    assert all(after["grad"][n] is g for n, g in before["grad"].items())  # the same .grad objects (here None)
    assert before["modes"] == after["modes"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("proxy", PROXY_NAMES)
def test_proxy_is_defined_or_says_why_not(proxy: str, kind: str, tiny_bert: Model, tiny_batches: Batches) -> None:
    """Each (proxy, kind) has finite values or a reason in ``Scores.undefined``: never both, never silence."""
    scores = score(tiny_bert(), proxy, tiny_batches)
    values = scores.curves.get(proxy) if kind == LORA else scores.kinds.get(proxy, {}).get(kind)
    reason = scores.undefined.get(proxy, {}).get(kind)
    if values is None and reason is None:
        pytest.fail(f"{proxy} on {kind}: neither values (Scores.curves / .kinds) nor a reason (Scores.undefined)")
    assert values is None or reason is None, f"{proxy} on {kind}: both values and the reason {reason!r}"
    if values is not None:
        numbers = list(leaves(values))
        assert numbers and all(math.isfinite(v) for v in numbers)
    else:
        assert isinstance(reason, str) and reason.strip()
