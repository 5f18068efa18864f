"""Tests for the evidence commands: multi-seed verify, rank-report, plots and the rendered report.

Everything runs on a tiny random BERT (saved with save_pretrained, with a small word-level
BertTokenizerFast) and a 40-row GLUE-layout MRPC copy, with 2 training steps per model.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HETEROSEARCH_QUIET", "1")

from heterosearch.errors import UserError  # noqa: E402
from heterosearch.evidence import describe, paired_comparison, ranking_stats, summarize  # noqa: E402
from heterosearch.evidence.baselines import TOLERANCE, random_allocation  # noqa: E402
from heterosearch.space.allocation import Allocation  # noqa: E402

MRPC = Path(__file__).resolve().parents[1] / "heterosearch/tasks/data/mrpc/train.tsv"
# Tiny BERT: hidden 32, FFN 64 -> q/k/v/o cost 64 per rank, ffn_in/ffn_out 96; 2 layers, 12 sites.
# 5376 = 21 x (q,v: 4 x 64) = 6 x (all: 8 x 64 + 4 x 96): both uniform baselines fit it exactly.
BUDGET = 5376
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _tiny_world(root: Path) -> tuple[Path, Path]:
    """(model folder, GLUE root) in ``root``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    lines = MRPC.read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:]
    glue = root / "glue" / "MRPC"
    glue.mkdir(parents=True)
    for name, rows in (("train", body[:40]), ("dev", body[40:56]), ("test", body[56:72])):  # a labelled GLUE test file is ignored
        (glue / f"{name}.tsv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    words = collections.Counter(w for row in body[:72] for text in row.split("\t")[3:] for w in re.findall(r"\w+|[^\w\s]", text.lower()))
    vocab = SPECIALS + [w for w, _ in words.most_common(150)]
    model_dir = root / "tiny-bert"
    model_dir.mkdir()
    (model_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(model_dir / "vocab.txt"), do_lower_case=True).save_pretrained(model_dir)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2, pad_token_id=0)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(model_dir)
    return model_dir, root / "glue"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import torch

    from heterosearch.pipeline import RunConfig, run_all

    # One thread: on a shared 2-core machine, two threads per tiny model spin against each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("verify")
    model_dir, glue = _tiny_world(root)
    run_dir = root / "run"
    cfg = RunConfig(budget=BUDGET, task="mrpc", model=str(model_dir), data_dir=str(glue), out=str(run_dir),
                    trials=8, max_train_steps=2, score_batches=2, batch_size=8)
    results = run_all(cfg)
    yield {"root": root, "model": model_dir, "glue": glue, "run": run_dir, "results": results}
    torch.set_num_threads(threads)


class Counter:
    """Wraps the training functions to count (and still run) every training."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import heterosearch.evidence.adalora as ada
        import heterosearch.train as train_pkg

        self.calls: list[str] = []
        orig_train, orig_ada = train_pkg.train_allocation, ada.train_adalora

        def train(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(kwargs.get("label", "?"))
            return orig_train(*args, **kwargs)

        def adalora(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(kwargs.get("label", "?"))
            return orig_ada(*args, **kwargs)

        monkeypatch.setattr(train_pkg, "train_allocation", train)
        monkeypatch.setattr(ada, "train_adalora", adalora)


@pytest.fixture(scope="module")
def verified(world: dict[str, Any]) -> dict[str, Any]:
    import heterosearch

    return heterosearch.verify(world["run"], seeds=2)  # the Python API: the verify command's own function


# ------------------------------------------------------------------ baselines at the budget


def test_baselines_match_the_budget_and_report_exact_counts(world: dict[str, Any], verified: dict[str, Any]) -> None:
    from heterosearch.evidence.seeds import open_run
    from heterosearch.pipeline import Run

    run: Run = open_run(world["run"])
    sites = run.site_map
    winner = verified["winner_params"]
    assert winner == world["results"]["params"] and winner <= BUDGET
    runs = verified["runs"]
    assert sorted(runs) == sorted(f"{m}/{s}" for m in ("winner", "uniform_qv", "uniform_all", "random", "heterolora", "adalora") for s in (0, 1))
    for key, e in runs.items():
        assert set(e["splits"]) == {"val", "test"}  # val carved from train (selection); test = the GLUE dev file (report)
        if e["method"] == "adalora":
            continue
        alloc = Allocation.from_dict(e["allocation"])
        assert e["params"] == alloc.params(sites) == e["planned_params"], key  # exact, and what was instantiated
        assert e["gap"] == pytest.approx((e["params"] - winner) / winner)
        if e["method"] in ("uniform_qv", "uniform_all", "random"):
            assert abs(e["params"] - winner) <= TOLERANCE * winner, key
    qv, everything = runs["uniform_qv/0"], runs["uniform_all/0"]
    assert qv["params"] == everything["params"] == BUDGET  # r=21 on q,v and r=6 on all 12 sites
    assert set(Allocation.from_dict(qv["allocation"]).lora.values()) == {21}
    assert len(Allocation.from_dict(everything["allocation"]).lora) == 12
    # random: one draw per seed, from the space's rank choices
    r0, r1 = (Allocation.from_dict(runs[f"random/{s}"]["allocation"]) for s in (0, 1))
    assert r0.lora != r1.lora and set(r0.lora.values()) <= set(run.space.lora.ranks)
    # HeteroLoRA static: top 25 % of 12 sites = 3, by grad_norm at rank 1, the largest rank that fits the winner
    h = runs["heterolora/0"]
    chosen = Allocation.from_dict(h["allocation"]).lora
    grad = json.loads((world["run"] / "scores.json").read_text())["curves"]["grad_norm"]
    top3 = sorted(grad, key=lambda k: -grad[k][1])[:3]
    assert sorted(chosen) == sorted(top3) and len(set(chosen.values())) == 1
    rank = next(iter(chosen.values()))
    per_rank = sum(sites[k].d_in + sites[k].d_out for k in chosen)
    assert rank * per_rank <= winner < (rank + 1) * per_rank
    # AdaLoRA: both counts, honestly
    info = verified["methods"]["adalora"]
    a = runs["adalora/0"]
    n_triplet = sum(s.d_in + s.d_out + 1 for s in run.sites)
    assert a["params_allocated"] == a["init_r"] * n_triplet
    assert a["params"] == sum(a["final_ranks"][s.key] * (s.d_in + s.d_out + 1) for s in run.sites)
    assert a["params_lora_equivalent"] == sum(a["final_ranks"][s.key] * (s.d_in + s.d_out) for s in run.sites)
    assert 0 < sum(a["final_ranks"].values()) <= a["target_r"] * len(run.sites) < a["init_r"] * len(run.sites)
    assert info["params"] == a["target_r"] * n_triplet and abs(info["gap"]) <= TOLERANCE
    # every method is listed with its plan and count
    for m in ("uniform_qv", "uniform_all", "heterolora", "adalora"):
        assert {"params", "target", "gap", "within_2pct", "rule"} <= set(verified["methods"][m])
    assert set(verified["methods"]["random"]["per_seed"]) == {"0", "1"}


def test_random_allocation_lands_in_the_window() -> None:
    import numpy as np

    from heterosearch.models.sites import Site

    sites = [Site(layer=i // 6, role=r, name=f"x{i}", d_in=384, d_out=1536 if r == "ffn_in" else 384)
             for i, r in enumerate(["q", "k", "v", "o", "ffn_in", "ffn_out"] * 6)]
    sites = [Site(s.layer, s.role, s.name, s.d_in, 384 if s.role != "ffn_in" else 1536) for s in sites]
    site_map = {s.key: s for s in sites}
    for seed in range(5):
        alloc = random_allocation(sites, (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64), 500_000, np.random.default_rng(seed))
        assert abs(alloc.params(site_map) - 500_000) <= 0.02 * 500_000
        assert set(alloc.lora.values()) <= {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64}


# ------------------------------------------------------------------ statistics on hand-checked numbers


def test_describe_and_paired_comparison_by_hand() -> None:
    d = describe([0.7, 0.8, 0.9])
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.8) and d["std"] == pytest.approx(0.1)
    assert describe([0.5])["std"] is None
    a = {0: 0.80, 1: 0.90, 2: 0.70}
    b = {0: 0.70, 1: 0.80, 2: 0.75}
    p = paired_comparison(a, b)
    assert p["diffs"] == pytest.approx([0.10, 0.10, -0.05])
    assert p["mean_diff"] == pytest.approx(0.05)
    assert p["std_diff"] == pytest.approx(math.sqrt(0.0075))  # deviations .05, .05, -.10
    # t = 0.05 / (0.0866 / sqrt 3) = 1.0 with 2 df: two-sided p = 0.4226
    assert p["t_test_p"] == pytest.approx(0.42265, abs=1e-4)
    assert 0 < p["wilcoxon_p"] <= 1 and (p["wins"], p["losses"], p["ties"]) == (2, 1, 0)
    small = paired_comparison({0: 0.8, 1: 0.9}, {0: 0.7, 1: 0.7})
    assert small["t_test_p"] is None and small["wilcoxon_p"] is None and "n too small" in small["test"]
    assert small["mean_diff"] == pytest.approx(0.15) and small["std_diff"] == pytest.approx(math.sqrt(0.005))
    same = paired_comparison({0: 0.8, 1: 0.8, 2: 0.8}, {0: 0.8, 1: 0.8, 2: 0.8})
    assert same["t_test_p"] is None and same["wilcoxon_p"] is None and "undefined" in same["test"]


def test_summarize_tables_by_split_metric_and_method() -> None:
    runs = {}
    for m, vals in (("winner", [0.8, 0.9, 0.7]), ("uniform_qv", [0.7, 0.8, 0.75])):
        for s, v in enumerate(vals):
            runs[f"{m}/{s}"] = {"method": m, "seed": s, "splits": {"dev": {"accuracy": v, "f1": v / 2}}}
    out = summarize(runs, ["winner", "uniform_qv"])
    dev = out["dev"]["accuracy"]
    assert dev["methods"]["winner"]["mean"] == pytest.approx(0.8) and dev["methods"]["winner"]["std"] == pytest.approx(0.1)
    assert dev["methods"]["uniform_qv"]["values"] == {"0": 0.7, "1": 0.8, "2": 0.75}
    assert dev["paired"]["uniform_qv"]["mean_diff"] == pytest.approx(0.05) and "winner" not in dev["paired"]
    assert out["dev"]["f1"]["paired"]["uniform_qv"]["mean_diff"] == pytest.approx(0.025)


def test_ranking_stats_on_synthetic_rankings() -> None:
    score = list(range(12))
    acc = [0.5 + 0.01 * i for i in range(12)]
    perfect = ranking_stats(score, acc, n_resamples=200)
    assert perfect["k"] == 3
    assert perfect["spearman"]["value"] == pytest.approx(1.0) and perfect["kendall"]["value"] == pytest.approx(1.0)
    assert perfect["top_k_precision"]["value"] == 1.0
    assert perfect["spearman"]["high"] == pytest.approx(1.0)
    reverse = ranking_stats(score, acc[::-1], n_resamples=200)
    assert reverse["spearman"]["value"] == pytest.approx(-1.0) and reverse["kendall"]["value"] == pytest.approx(-1.0)
    assert reverse["top_k_precision"]["value"] == 0.0
    noisy = ranking_stats(score, [0.5, 0.52, 0.51, 0.55, 0.53, 0.58, 0.54, 0.6, 0.57, 0.62, 0.59, 0.61], n_resamples=300)
    st = noisy["spearman"]
    assert 0 < st["value"] < 1 and st["low"] <= st["value"] <= st["high"] and st["method"] in ("BCa", "percentile")


def test_reliability_separates_signal_from_seed_noise() -> None:
    import numpy as np

    from heterosearch.evidence.ranking import reliability

    rng = np.random.default_rng(0)
    truth = np.linspace(0.6, 0.8, 40)[:, None]  # between-allocation sd ~0.058
    clean = reliability(truth + rng.normal(0, 0.005, (40, 2)))
    assert clean["reliability"] > 0.98 and clean["max_correlation"] > 0.99
    noise = reliability(0.7 + rng.normal(0, 0.01, (40, 2)))  # every allocation the same: only seeds differ
    assert noise["reliability"] < 0.3 and noise["seed_sd"] == pytest.approx(0.01, rel=0.3)
    # exact value on a hand-checked case: seed var = mean(0.5, 0.5, 0.5) = 0.5, var of means = 1, m = 2
    x = np.array([[0.5, 1.5], [1.5, 2.5], [2.5, 3.5]])
    assert reliability(x)["reliability"] == pytest.approx(1 - 0.5 / 2 / 1.0)
    with pytest.raises(ValueError):
        reliability(np.ones((2, 2)))


def test_vectorised_rank_statistics_match_scipy() -> None:
    import numpy as np
    from scipy import stats

    from heterosearch.evidence.ranking import kendall_tau_b, spearman, top_k_precision

    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(6, 15)).astype(float)  # many ties
    y = x + rng.integers(-2, 3, size=(6, 15))
    assert np.allclose(spearman(x, y), [stats.spearmanr(a, b).statistic for a, b in zip(x, y)])
    assert np.allclose(kendall_tau_b(x, y), [stats.kendalltau(a, b).statistic for a, b in zip(x, y)])
    assert top_k_precision([3, 2, 1, 0], [0.9, 0.1, 0.8, 0.2], 2) == 0.5
    assert top_k_precision([3, 2, 1, 0], [0.5, 0.5, 0.5, 0.5], 1) == 1.0  # ties with the k-th best count as hits
    assert np.allclose(top_k_precision(x, y, 4), [top_k_precision(a, b, 4) for a, b in zip(x, y)])


# ------------------------------------------------------------------ resume


def test_verify_resumes_without_retraining(world: dict[str, Any], verified: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from heterosearch.evidence import verify_run

    counter = Counter(monkeypatch)
    again = verify_run(world["run"], seeds=2)
    assert counter.calls == []
    assert again["runs"] == verified["runs"]
    more = verify_run(world["run"], seeds=3)  # adds seed 2 only
    assert len(counter.calls) == 6 and all(c.endswith("s2") for c in counter.calls)
    assert more["summary"]["test"]["accuracy"]["methods"]["winner"]["n"] == 3
    pair = more["summary"]["test"]["accuracy"]["paired"]["uniform_qv"]
    assert pair["n"] == 3 and "n too small" not in pair["test"]
    with pytest.raises(UserError, match="other settings"):
        verify_run(world["run"], seeds=3, max_train_steps=3)


def test_verify_reuses_the_runs_own_training(world: dict[str, Any], verified: dict[str, Any]) -> None:
    own = json.loads((world["run"] / "verify.json").read_text())
    assert verified["runs"]["winner/0"]["source"] == "verify.json"
    assert verified["runs"]["winner/0"]["splits"] == own["winner"]["splits"]
    assert verified["runs"]["uniform_qv/0"]["splits"] == own["baseline"]["splits"]
    assert verified["runs"]["winner/1"]["source"] == "trained"


def test_verify_reuses_another_folders_trainings_only_when_they_match(world: dict[str, Any], verified: dict[str, Any],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """--reuse-from: a second folder with the same settings takes the first one's finished runs, equal to the bit;
    a different training config takes none of them (and says why)."""
    from heterosearch.evidence import verify_run
    from heterosearch.pipeline import RunConfig, run_all

    other = world["root"] / "run-reuse"
    run_all(RunConfig(budget=BUDGET, task="mrpc", model=str(world["model"]), data_dir=str(world["glue"]), out=str(other),
                      trials=8, max_train_steps=2, score_batches=2, batch_size=8))
    counter = Counter(monkeypatch)
    changed = verify_run(other, seeds=1, methods="winner,uniform_all", max_train_steps=3, reuse_from=[world["run"]])
    assert len(counter.calls) == 2  # max_train_steps 3 is another training config: nothing reused
    assert all(e["source"] == "trained" for e in changed["runs"].values())

    counter.calls.clear()
    state = verify_run(other, seeds=2, overwrite=True, reuse_from=[world["run"]])
    assert counter.calls == []  # every (method, seed) was trained before, with these settings
    first = verified["runs"]
    for key, entry in state["runs"].items():
        assert entry["splits"] == first[key]["splits"] and entry["params"] == first[key]["params"], key
        if key not in ("winner/0", "uniform_qv/0"):  # those two come from the folder's own verify.json
            assert entry["source"] == str(Path(world["run"]) / "verify_seeds.json"), key
    assert state["summary"] == verified["summary"]


def test_reuse_across_a_change_of_loras_rate_takes_only_adalora(world: dict[str, Any], verified: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder whose LoRA methods train at another rate (lr_scaling none at a budget where the rule
    lowers it) gives only its AdaLoRA trainings, whose rate (recipe.adalora_lr) did not change."""
    from heterosearch.evidence import verify_run
    from heterosearch.pipeline import RunConfig, run_all

    assert any(e["method"] == "adalora" for e in verified["runs"].values())  # else this checks nothing
    other = world["root"] / "run-reuse-rate"
    run_all(RunConfig(budget=BUDGET, task="mrpc", model=str(world["model"]), data_dir=str(world["glue"]), out=str(other),
                      trials=8, max_train_steps=2, score_batches=2, batch_size=8), verify=False)
    counter = Counter(monkeypatch)
    before = open_run_train_config(world["run"])
    state = verify_run(other, seeds=1, methods="winner,uniform_all,adalora", reuse_from=[world["run"]],
                       recipe={"lr_scaling": "none"})
    assert state["train_config"]["lr"] != before["lr"]  # the rule lowers LoRA's rate at this budget
    assert sorted(counter.calls) == ["uniform_all s0", "winner s0"]  # LoRA retrained at the other rate, AdaLoRA not
    ada = state["runs"]["adalora/0"]
    assert ada["source"] == str(Path(world["run"]) / "verify_seeds.json")
    assert ada["splits"] == verified["runs"]["adalora/0"]["splits"] and ada["lr"] == verified["runs"]["adalora/0"]["lr"]


def test_reuse_takes_another_methods_training_of_the_same_allocation(world: dict[str, Any], verified: dict[str, Any],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A LoRA method whose allocation equals another method's (a search that picks a baseline) takes
    that method's training of the same seed, under its own name; a different seed or AdaLoRA does not."""
    from dataclasses import replace

    import heterosearch.evidence.seeds as seeds_mod
    from heterosearch.evidence import verify_run
    from heterosearch.evidence.baselines import _site_map
    from heterosearch.evidence.reuse import reused_entry
    from heterosearch.pipeline import RunConfig, run_all

    other = world["root"] / "run-reuse-same-allocation"
    run_all(RunConfig(budget=BUDGET, task="mrpc", model=str(world["model"]), data_dir=str(world["glue"]), out=str(other),
                      trials=8, max_train_steps=2, score_batches=2, batch_size=8), verify=False)
    first = verified["runs"]
    assert first["uniform_all/0"]["allocation"] != first["winner/0"]["allocation"]  # else this checks nothing
    real = seeds_mod.plan_baselines

    def uniform_all_is_the_winner(*args: Any, **kwargs: Any) -> Any:
        plans = real(*args, **kwargs)
        winner = args[4]  # plan_baselines(sites, roles, ranks, budget, winner, ...)
        plans["uniform_all"] = replace(plans["uniform_all"], allocation=winner, params=winner.params(_site_map(args[0])))
        return plans

    monkeypatch.setattr(seeds_mod, "plan_baselines", uniform_all_is_the_winner)
    counter = Counter(monkeypatch)
    state = verify_run(other, seeds=2, methods="uniform_all", reuse_from=[world["run"]])
    assert counter.calls == []  # both seeds were the first folder's winner trainings
    for seed in (0, 1):
        entry = state["runs"][f"uniform_all/{seed}"]
        assert entry["method"] == "uniform_all" and entry["seed"] == seed and entry["name"] == first[f"uniform_all/{seed}"]["name"]
        assert entry["allocation"] == first[f"winner/{seed}"]["allocation"] and entry["splits"] == first[f"winner/{seed}"]["splits"]
        assert entry["source"].endswith(f"(winner/{seed})")

    # the match needs the same seed and planned parameters, and never crosses into AdaLoRA (no allocation)
    entries = {"winner/0": {**first["winner/1"], "seed": 1}}  # seed 1's training filed under another key
    alloc, params = first["winner/1"]["allocation"], first["winner/1"]["planned_params"]
    assert reused_entry(entries, "uniform_all/0", alloc, params) is None
    assert reused_entry(entries, "uniform_all/1", alloc, params + 1) is None
    assert reused_entry(entries, "uniform_all/1", alloc, params)["splits"] == first["winner/1"]["splits"]
    assert reused_entry(entries, "adalora/1", None, params) is None


def open_run_train_config(run_dir: Path) -> dict[str, Any]:
    import json

    return json.loads((Path(run_dir) / "verify_seeds.json").read_text())["train_config"]


# ------------------------------------------------------------------ rank report


def test_rank_report_tiny(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from heterosearch.evidence import rank_report

    out = world["root"] / "rank"
    rep = rank_report(task="mrpc", space="lora", samples=4, budget=BUDGET, steps=2, seeds=(0, 1), out=out,
                      model=str(world["model"]), data_dir=str(world["glue"]), score_batches=2, n_resamples=200)
    assert rep["status"] == "complete" and len(rep["candidates"]) == 4 and rep["k"] == 1
    for c in rep["candidates"]:
        assert abs(c["params"] - BUDGET) <= 0.02 * BUDGET and set(c["acc"]) == {"0", "1"}
        assert c["mean"] == pytest.approx((c["acc"]["0"] + c["acc"]["1"]) / 2)
        # Minus the dev loss per seed: a real, positive cross-entropy from the run's evaluation.
        assert {s: -r["eval_loss"] for s, r in c["runs"].items()} == c["neg_loss"]
        assert all(v < 0 for v in c["neg_loss"].values())
    losses = [c["neg_loss_mean"] for c in rep["candidates"]]
    assert len(set(losses)) == len(losses)  # the loss separates allocations (accuracy may tie)
    assert rep["by_val_loss"]["noise_ceiling"]["what"].startswith("the same statistics between the validation losses")
    assert rep["split"] == "val" and rep["splits"]["val_examples"] > 0
    assert set(rep["by_val_loss"]["proxies"]) == set(rep["proxies"])
    scores = json.loads((out / "scores.json").read_text())["curves"]
    c0 = rep["candidates"][0]
    assert c0["scores"]["spectral"] == pytest.approx(sum(scores["spectral"][k][r] for k, r in c0["allocation"]["lora"].items()))
    assert set(rep["proxies"]) == {"grad_norm", "snip", "synflow", "spectral"}
    for block in (*rep["proxies"].values(), rep["noise_ceiling"], rep["baselines"]["params"], rep["baselines"]["random"]):
        assert {"spearman", "kendall", "top_k_precision"} <= set(block)
    assert rep["uniform"]["params"] == BUDGET and 0 <= rep["uniform"]["fraction_of_samples_above"] <= 1
    assert json.loads((out / "rank_report.json").read_text())["status"] == "complete"
    from typer.testing import CliRunner

    from heterosearch.cli import app

    counter = Counter(monkeypatch)  # the same command again, through the CLI: finished samples are reused
    res = CliRunner().invoke(app, ["rank-report", "--task", "mrpc", "--space", "lora", "--samples", "4", "--budget", str(BUDGET),
                                   "--steps", "2", "--seeds", "0,1", "--out", str(out), "--model", str(world["model"]),
                                   "--data-dir", str(world["glue"]), "--score-batches", "2"])
    assert res.exit_code == 0, res.output
    assert counter.calls == [] and "spectral" in res.output and "ceiling" in res.output
    text = (out / "report.md").read_text()
    assert "Proxy ranking quality" in text and "plots/proxy_vs_accuracy.png" in text and "minus the mean validation loss" in text
    assert _png(out / "plots/proxy_vs_accuracy.png") and _png(out / "plots/proxy_vs_dev_loss.png")
    assert "plots/proxy_vs_dev_loss.png" in text
    # The resumed invocation trained nothing, so the wall section must still add up the earlier trainings.
    doc = json.loads((out / "rank_report.json").read_text())
    trained = sum(r["seconds"] for c in doc["candidates"] for r in c["runs"].values())
    assert trained > 0 and f"{trained:.0f} s of training summed over all invocations" in text
    assert 0.0 <= doc["reliability"]["reliability"] <= 1.0 and "Reliability of the 2-seed mean" in text
    assert "reliability of the seed-mean" in res.output
    bad = CliRunner().invoke(app, ["rank-report", "--budget", str(BUDGET), "--samples", "4", "--seeds", "0", "--out", str(out)])
    assert bad.exit_code == 2 and "two different seeds" in bad.output


# ------------------------------------------------------------------ plots and report


def _png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_embeds_plots_from_json_only(world: dict[str, Any], verified: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from heterosearch.cli import app

    res = CliRunner().invoke(app, ["report", str(world["run"])])
    assert res.exit_code == 0, res.output
    text = (world["run"] / "report.md").read_text()
    for name in ("allocation", "search_history", "seed_spread"):
        assert f"plots/{name}.png" in text and _png(world["run"] / "plots" / f"{name}.png")
    assert "Multi-seed verification" in text and "### val split" in text and "### test split" in text
    assert "AdaLoRA keeps full-size tensors" in text and "heterolora" in text


def test_heatmap_draws_other_sections(tmp_path: Path) -> None:
    from heterosearch.report.plots import allocation_heatmap

    sites = [{"key": f"L{i}.{r}", "layer": i, "role": r} for i in range(3) for r in ("q", "v", "ffn_in")]
    keyed = {"lora": {"L0.q": 4, "L2.ffn_in": 16}, "shortcut": {"L1.residual_1": 4, "L2.shortcut_sa": 8},
             "extra": {"q": {"rank": 8, "variant": "share_ab"}}}
    assert _png(allocation_heatmap(keyed, sites, tmp_path / "a.png"))
    elements = {"lora": {"L0.q": 4}, "shortcut": [{"layer": 1, "ctype": "residual_1", "rank": 4}],
                "bank": [{"role": "v", "layers": [0, 1, 2], "rank": 8, "variant": "share_ab"}],
                "mos": [{"role": "q", "r_e": 4, "shards": 8, "r_p": 2, "ranks": {"1": 2, "2": 4}}]}
    assert _png(allocation_heatmap(elements, sites, tmp_path / "b.png"))


def test_cli_verify_and_errors(world: dict[str, Any], verified: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from heterosearch.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["verify", str(world["run"]), "--seeds", "2", "--methods", "uniform_qv,random"])
    assert res.exit_code == 0, res.output
    assert "uniform_qv" in res.output and "winner" in res.output
    bad = runner.invoke(app, ["verify", str(world["run"]), "--methods", "lora_x"])
    assert bad.exit_code == 2 and "unknown verify method" in bad.output
    nothing = runner.invoke(app, ["report", str(tmp_path)])
    assert nothing.exit_code == 2 and "nothing to report" in nothing.output


def test_api_verify_takes_the_commands_training_settings(world: dict[str, Any], tmp_path: Path) -> None:
    """heterosearch.verify(..., lr=, lr_scaling=, warmup=, batch_size=, max_length=, lora_dropout=, device=, precision=) as the flags."""
    import shutil

    import heterosearch

    run = tmp_path / "run"  # a copy: the recipe below must not disturb the module's verified run
    shutil.copytree(world["run"], run, ignore=shutil.ignore_patterns("*.lock", "study.journal*", "verify_seeds.json"))
    config_before = (run / "config.json").read_bytes()
    state = heterosearch.verify(run, seeds=1, methods=["winner"], max_train_steps=1, lr=3e-3, warmup=0.0,
                                batch_size=4, max_length=32, lora_dropout=0.1, device="cpu", precision="bf16",
                                lr_scaling="none")  # else the rate falls with this budget's rank (test_recipe_rate.py)
    tc = state["train_config"]
    assert (tc["lr"], tc["warmup"], tc["batch_size"], tc["max_length"], tc["lora_dropout"], tc["precision"],
            tc["max_steps"]) == (3e-3, 0.0, 4, 32, 0.1, "bf16", 1)
    assert state["runs"]["winner/0"]["source"] == "trained"  # not the run's own fp32 training, reused
    assert (run / "config.json").read_bytes() == config_before  # the settings are for this verify only
    # Each setting is checked as its flag is: one UserError line, before any training.
    for kwargs, fragment in (({"device": "cuda:7"}, "--device cuda:7"), ({"precision": "fp8"}, "--precision 'fp8'"),
                             ({"lr": -1.0}, "--lr"), ({"lora_dropout": 1.0}, "--lora-dropout"),
                             ({"batch_size": 0}, "--batch-size")):
        with pytest.raises(UserError) as err:
            heterosearch.verify(run, seeds=1, methods=["winner"], max_train_steps=1, overwrite=True, **kwargs)
        assert fragment in str(err.value) and "\n" not in str(err.value), (kwargs, str(err.value))
