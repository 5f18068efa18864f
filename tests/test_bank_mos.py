"""Bank (ShareLoRA / Tied-LoRA) and MoS adapter kinds: one case matrix driving shared contract tests."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from heterosearch.adapters import count_adapter_params
from heterosearch.adapters.bank import VARIANTS, BankElement, BankLinear, bank_params, bank_spectral
from heterosearch.adapters.kinds import ADAPTER_KINDS, shared_store
from heterosearch.adapters.mos import MosElement, MosLinear, mos_params, mos_spectral
from heterosearch.models import discover_sites
from tests.tiny_models import tiny_batch, tiny_model

# Tiny models: one thread is ~100x faster than OpenMP spinning on a shared, loaded 2-core box.
torch.set_num_threads(1)

MOS = MosElement(role="v", r_e=2, shards=2, r_p=1, ranks={0: 3, 1: 3})
# (family, kind, elements, expected count by hand). Tiny BERT v: 32 -> 32; tiny GPT-2 qkv: 32 -> 96.
CASES: dict[str, tuple[str, str, list[Any], int]] = {
    **{
        f"bert-{v}": ("bert", "bank", [BankElement("v", (0, 1), 2, v)], n)
        for v, n in zip(VARIANTS, (2 * 32 + 2 * 2 * 32, 2 * 2 * 32 + 2 * 32, 128, 128, 128 + 2 * (2 + 32)))
    },
    "bert-mos": ("bert", "mos", [MOS], 2 * 2 * (32 + 32)),
    "gpt2-tl6": ("gpt2", "bank", [BankElement("qkv", (0, 1), 2, "tl6")], 2 * 128 + 2 * (2 + 96)),
    "gpt2-share_a-ffn": ("gpt2", "bank", [BankElement("ffn_in", (0, 1), 3, "share_a")], 3 * 32 + 2 * 3 * 64),
    "gpt2-mos": ("gpt2", "mos", [MosElement("qkv", r_e=1, shards=4, r_p=0, ranks={0: 2, 1: 1})], 1 * 2 * 128),
}


def build(case: str, seed: int = 0) -> tuple[torch.nn.Module, list[Any]]:
    """A frozen tiny model with the case's elements applied from a generator seeded ``seed``."""
    family, kind, elements, _ = CASES[case]
    model = tiny_model(family)
    for p in model.parameters():
        p.requires_grad_(False)
    ADAPTER_KINDS.get(kind).apply(model, discover_sites(model), elements, torch.Generator().manual_seed(seed))
    return model, elements


def wrappers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BankLinear, MosLinear))]


def trainable(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad and n.rpartition(".")[2].startswith(prefix)}


@torch.no_grad()
def randomise(model: torch.nn.Module) -> None:
    """Move adapters off the B = 0 init so every path carries gradient."""
    for p in trainable(model, "hs_").values():
        p.normal_(0.0, 0.1)


@pytest.mark.parametrize("case", CASES)
def test_init_equals_base(case: str) -> None:
    family = CASES[case][0]
    batch = tiny_batch()
    with torch.no_grad():
        base = tiny_model(family)(**batch).logits
        adapted = build(case)[0](**batch).logits
    torch.testing.assert_close(adapted, base, atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_count_matches_formula_and_tensors(case: str) -> None:
    _, kind, elements, by_hand = CASES[case]
    model, _ = build(case)
    prefix = ADAPTER_KINDS.get(kind).prefix
    sites = discover_sites(tiny_model(CASES[case][0]))
    assert ADAPTER_KINDS.get(kind).params(sites, elements) == by_hand
    assert count_adapter_params(model) == by_hand
    assert sum(p.numel() for p in trainable(model, prefix).values()) == by_hand
    # Shared tensors are named once, in the model-level store; wrappers hold references.
    ws = wrappers(model)
    assert len(ws) == 2
    held = [w.pool if isinstance(w, MosLinear) else w.shared for w in ws]
    assert held[0] is held[1] is shared_store(model)[elements[0].store_name]
    names = [n for n, _ in model.named_parameters(remove_duplicate=False) if "hs_" in n]
    assert len(names) == len(set(names)) == len(trainable(model, prefix))
    if kind == "bank" and elements[0].variant == "tl5":
        assert all(not b.requires_grad for n, b in model.named_buffers() if "hs_bank_" in n)
        assert sum("hs_bank_u" in n for n, _ in model.named_buffers()) == 2


def test_budget_formulas() -> None:
    d_in, d_out, r, n = 384, 1536, 8, 6
    assert bank_params("share_a", r, d_in, d_out, n) == r * d_in + n * r * d_out
    assert bank_params("share_b", r, d_in, d_out, n) == n * r * d_in + r * d_out
    assert bank_params("share_ab", r, d_in, d_out, n) == bank_params("tl5", r, d_in, d_out, n) == r * (d_in + d_out)
    assert bank_params("tl6", r, d_in, d_out, n) == r * (d_in + d_out) + n * (r + d_out)
    assert mos_params(2, n, d_in, d_out) == 2 * n * (d_in + d_out)
    with pytest.raises(ValueError, match="variant"):
        bank_params("tl7", r, d_in, d_out, n)


@pytest.mark.parametrize("case", ["bert-share_a", "bert-share_b", "bert-tl6", "bert-mos", "gpt2-tl6"])
def test_every_member_reaches_shared_tensors(case: str) -> None:
    model, _ = build(case)
    randomise(model)
    store = shared_store(model)
    shared = dict(store.named_parameters())
    assert shared, "a bank/pool keeps at least one tensor in the shared store"
    g = torch.Generator().manual_seed(1)
    for w in wrappers(model):  # a loss on this member layer only
        model.zero_grad(set_to_none=True)
        x = torch.randn(3, w.A.shape[1], generator=g)
        (w(x) * torch.randn(3, w.B.shape[0], generator=g)).sum().backward()
        for name, p in shared.items():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} gets no gradient from this member"
        if isinstance(w, MosLinear):  # only the shards this layer selected receive gradient
            rows = set(torch.nonzero(store[MOS.store_name].hs_mos_A.grad.abs().sum(1)).flatten().tolist())
            assert rows == set(w.hs_mos_idx_A.tolist())
        for name, p in w.named_parameters(recurse=False):  # per-layer tensors (B of share_a, u, v of tl6)
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # And through the whole model: every trainable adapter tensor moves.
    model.zero_grad(set_to_none=True)
    model(**tiny_batch()).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable(model, "hs_").values())


@pytest.mark.parametrize("case", CASES)
def test_save_load_roundtrip(case: str, tmp_path: Any) -> None:
    model, _ = build(case, seed=0)
    opt = torch.optim.SGD(list(trainable(model, "hs_").values()), lr=0.5)
    batch = tiny_batch()
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
    model.eval()
    state = {n: t.detach().contiguous() for n, t in model.named_parameters() if n.rpartition(".")[2].startswith("hs_")}
    state |= {n: t.contiguous() for n, t in model.named_buffers() if n.rpartition(".")[2].startswith("hs_")}
    save_file(state, str(tmp_path / "adapter.safetensors"))

    fresh, _ = build(case, seed=1)  # different A init, and for MoS different selections
    result = fresh.load_state_dict(load_file(str(tmp_path / "adapter.safetensors")), strict=False)
    assert not result.unexpected_keys
    assert all("hs_" not in k for k in result.missing_keys)
    with torch.no_grad():
        torch.testing.assert_close(fresh(**batch).logits, model(**batch).logits, atol=1e-6, rtol=0)


def test_mos_selection_buffers_matter(tmp_path: Any) -> None:
    """Loading the pools without the index buffers does not reproduce the model: indices are state."""
    model, _ = build("bert-mos", seed=0)
    randomise(model)
    params = {n: p.detach() for n, p in model.named_parameters() if "hs_mos_" in n}
    fresh, _ = build("bert-mos", seed=1)
    fresh.load_state_dict(params, strict=False)
    batch = tiny_batch()
    with torch.no_grad():
        assert not torch.allclose(fresh(**batch).logits, model(**batch).logits, atol=1e-4)


def test_mos_selection_structure_and_determinism() -> None:
    a, b = wrappers(build("bert-mos", seed=0)[0]), wrappers(build("bert-mos", seed=0)[0])
    c = wrappers(build("bert-mos", seed=5)[0])
    for wa, wb in zip(a, b):
        assert torch.equal(wa.hs_mos_idx_A, wb.hs_mos_idx_A) and torch.equal(wa.hs_mos_idx_B, wb.hs_mos_idx_B)
    assert any(not torch.equal(wa.hs_mos_idx_A, wc.hs_mos_idx_A) for wa, wc in zip(a, c))
    assert not torch.equal(a[0].hs_mos_idx_A, a[1].hs_mos_idx_A)
    # Pool of r_e L l = 8 shards; public part (r_e - r_p) L l = 4; layer p owns private shards 4 + 2p, 5 + 2p.
    l, public = MOS.shards, (MOS.r_e - MOS.r_p) * 2 * MOS.shards
    for p, w in enumerate(a):
        for idx in (w.hs_mos_idx_A, w.hs_mos_idx_B):
            assert idx.numel() == w.rank * l and len(set(idx.tolist())) == idx.numel()  # without replacement
            drawn = idx.tolist()
            assert sorted(i for i in drawn if i >= public) == [public + p * l + j for j in range(MOS.r_p * l)]
            assert sum(i < public for i in drawn) == (w.rank - MOS.r_p) * l
        assert w.A.shape == (w.rank, 32) and w.B.shape == (32, w.rank)
        torch.testing.assert_close(w.A[0], torch.cat([w.pool.hs_mos_A[i] for i in w.hs_mos_idx_A[:l]]))


@pytest.mark.parametrize(
    "r_e, shards, r_p, ranks", [(2, 2, 1, {0: 1, 1: 3}), (2, 1, 0, {0: 4, 1: 2}), (2, 4, 2, {0: 2, 1: 2})]
)
def test_mos_count_independent_of_rank_shards_private(r_e: int, shards: int, r_p: int, ranks: dict[int, int]) -> None:
    model = tiny_model("bert")
    sites = discover_sites(model)
    element = MosElement("v", r_e=r_e, shards=shards, r_p=r_p, ranks=ranks)
    ADAPTER_KINDS.get("mos").apply(model, sites, [element], torch.Generator().manual_seed(0))
    assert count_adapter_params(model) == ADAPTER_KINDS.get("mos").params(sites, [element]) == 2 * 2 * 64
    assert [w.rank for w in wrappers(model)] == list(ranks.values())


def test_two_kinds_on_one_model_compose() -> None:
    model = tiny_model("bert")
    sites = discover_sites(model)
    g = torch.Generator().manual_seed(0)
    bank = [BankElement("q", (0, 1), 2, "share_a")]
    ADAPTER_KINDS.get("bank").apply(model, sites, bank, g)
    ADAPTER_KINDS.get("mos").apply(model, sites, [MOS], g)
    assert count_adapter_params(model) == bank_params("share_a", 2, 32, 32, 2) + mos_params(2, 2, 32, 32)
    assert sorted(shared_store(model)) == ["bank_q_share_a_L0_1", "mos_v"]


def test_elements_roundtrip_through_json() -> None:
    for element in [e for _, _, es, _ in CASES.values() for e in es]:
        again = type(element).from_dict(json.loads(json.dumps(element.to_dict())))
        assert again == element
    assert BankElement("v", (1, 0), 2, "share_a").key == "bank.v.share_a"
    assert MOS.key == "mos.v"


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: BankElement("vv", (0, 1), 2, "share_a"), "role"),
        (lambda: BankElement("v", (0,), 2, "share_a"), "layers"),
        (lambda: BankElement("v", (0, 0), 2, "share_a"), "layers"),
        (lambda: BankElement("v", (0, 1), 0, "share_a"), "rank"),
        (lambda: BankElement("v", (0, 1), 2, "share_c"), "variant"),
        (lambda: BankElement.from_dict({"role": "v", "layers": [0, 1], "rank": 2}), "variant"),
        (lambda: MosElement("v", r_e=0, shards=2, r_p=0, ranks={0: 1}), "r_e"),
        (lambda: MosElement("v", r_e=2, shards=0, r_p=0, ranks={0: 1}), "shards"),
        (lambda: MosElement("v", r_e=2, shards=2, r_p=3, ranks={0: 3}), "r_p"),
        (lambda: MosElement("v", r_e=2, shards=2, r_p=1, ranks={}), "ranks"),
        (lambda: MosElement("v", r_e=2, shards=2, r_p=2, ranks={0: 1}), r"ranks\[0\]"),
        (lambda: MosElement("v", r_e=2, shards=2, r_p=1, ranks={0: 5, 1: 1}), "public pool"),
    ],
)
def test_validation_names_the_field(make: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()


def test_apply_time_checks() -> None:
    model = tiny_model("bert")
    sites = discover_sites(model)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="shards = 3 must divide"):
        ADAPTER_KINDS.get("mos").apply(model, sites, [MosElement("v", 1, 3, 0, {0: 1, 1: 1})], g)
    with pytest.raises(ValueError, match="no site L2.v"):
        ADAPTER_KINDS.get("bank").apply(model, sites, [BankElement("v", (1, 2), 2, "share_a")], g)
    with pytest.raises(ValueError, match="two banks"):
        ADAPTER_KINDS.get("bank").apply(
            model, sites, [BankElement("v", (0, 1), 2, "share_a"), BankElement("v", (0, 1), 2, "tl5")], g
        )


def test_bank_spectral() -> None:
    g = torch.Generator().manual_seed(0)
    G = torch.randn(6, 4, generator=g, dtype=torch.float64)  # noqa: N806
    H = torch.randn(6, 4, generator=g, dtype=torch.float64)  # noqa: N806
    top = lambda M, r: float((torch.linalg.svdvals(M)[:r] ** 2).sum())  # noqa: E731
    same = {"L0.v": G, "L1.v": G}
    # Identical members: a shared delta sees the gradient twice (4x), a shared subspace adds per-layer gains (2x).
    assert bank_spectral(same, BankElement("v", (0, 1), 2, "share_ab")) == pytest.approx(4 * top(G, 2))
    assert bank_spectral(same, BankElement("v", (0, 1), 2, "tl5")) == pytest.approx(4 * top(G, 2))
    assert bank_spectral(same, BankElement("v", (0, 1), 2, "share_a")) == pytest.approx(2 * top(G, 2))
    assert bank_spectral(same, BankElement("v", (0, 1), 2, "share_b")) == pytest.approx(2 * top(G, 2))
    mixed = {"L0.v": G, "L1.v": H}
    assert bank_spectral(mixed, BankElement("v", (0, 1), 2, "tl6")) == pytest.approx(top(G + H, 2))
    # A shared row space is no better than a free one per layer, and full rank recovers it.
    free = top(G, 2) + top(H, 2)
    assert bank_spectral(mixed, BankElement("v", (0, 1), 2, "share_a")) <= free + 1e-9
    assert bank_spectral(mixed, BankElement("v", (0, 1), 4, "share_a")) == pytest.approx(top(G, 4) + top(H, 4))
    with pytest.raises(ValueError, match="L1.v"):
        bank_spectral({"L0.v": G}, BankElement("v", (0, 1), 2, "share_a"))


def test_mos_spectral() -> None:
    G0 = torch.diag(torch.tensor([4.0, 3.0, 0.5]))  # noqa: N806  sigma^2: 16, 9, 0.25
    G1 = torch.diag(torch.tensor([2.0, 1.0, 0.1]))  # noqa: N806  sigma^2: 4, 1, 0.01
    grads = {"L0.v": G0, "L1.v": G1}
    # Per-site top-2 gains (16, 9; 4, 1), capped at r_e L = 2 rank-one directions: 16 + 9.
    assert mos_spectral(grads, MosElement("v", 1, 1, 0, {0: 2, 1: 2})) == pytest.approx(25.0)
    # Cap 4 > sum of ranks 1 + 2: every selected value counts: 16 + 4 + 1.
    assert mos_spectral(grads, MosElement("v", 2, 1, 0, {0: 1, 1: 2})) == pytest.approx(21.0)
