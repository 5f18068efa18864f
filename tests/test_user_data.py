"""A user's own data: ``--task FILE`` (CSV/TSV/JSON/JSONL, a folder, a hub dataset) and ``--task lm:FILE``.

Three end-to-end runs (a tiny random Llama causal LM on a prompt/response JSONL file, a tiny
BERT and a tiny DeBERTa-v2 on a CSV), the held-out splits, problem inference, the LM label
mask and loss, and the one-line answers to bad data (missing column, empty file, no such file,
a label that does not parse, an unknown --problem). Everything is built in the test: no download.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from heterosearch.errors import UserError
from heterosearch.tasks import load_task, task_slug
from heterosearch.tasks.splits import held_out
from tests.test_bad_inputs import invoke, one_line_error
from tests.tiny_run import WORDS, make_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread_module")

ROLES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
         "ffn_in": "mlp.up_proj", "ffn_out": "mlp.down_proj"}


def make_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama causal LM (hidden 32, 4 heads, 2 kv heads) and a word-level tokenizer with no pad token."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *WORDS, ".", ",", "?"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  model_max_length=64)
    tok.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


DEBERTA_ROLES = {"q": "attention.self.query_proj", "k": "attention.self.key_proj", "v": "attention.self.value_proj",
                 "o": "attention.output.dense", "ffn_in": "intermediate.dense", "ffn_out": "output.dense"}


def make_tiny_deberta(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer DeBERTa-v2 classifier (hidden 32, 4 heads) and its own tokenizer class on a tiny unigram vocab."""
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    # A unigram vocab in the SentencePiece spelling ("▁" starts a word), so the real DeBERTa-v2
    # tokenizer class loads it; every word the test data uses is one piece.
    pieces = [(t, 0.0) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    pieces += [("▁" + w, -1.0) for w in (*WORDS, "really", ".", ",", "?")] + [(",", -2.0), (".", -2.0)]
    tok = DebertaV2Tokenizer(vocab=pieces, unk_id=1, model_max_length=64)
    tok.save_pretrained(folder)
    config = DebertaV2Config(vocab_size=len(pieces), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64, pad_token_id=0, num_labels=2)
    torch.manual_seed(seed)
    DebertaV2ForSequenceClassification(config).save_pretrained(folder)
    return folder


def _sentence(rng: random.Random, lo: int = 3, hi: int = 8) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_chat(path: Path, n: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = [{"prompt": _sentence(rng) + " ?", "response": _sentence(rng) + " ."} for _ in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list[Any]], header: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def review_rows(n: int, seed: int = 0) -> list[list[Any]]:
    rng = random.Random(seed)
    return [[_sentence(rng) + ", really", rng.randint(1, 5), rng.choice(["pos", "neg"])] for _ in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("user-data")
    return {
        "bert": make_tiny_model(root / "bert"),
        "llama": make_tiny_llama(root / "llama"),
        "deberta": make_tiny_deberta(root / "deberta"),
        "chat": write_chat(root / "chat.jsonl"),
        "reviews": write_csv(root / "reviews.csv", review_rows(60), ["review", "stars", "sentiment"]),
    }


# -- end to end -----------------------------------------------------------------------------------
def test_lm_run_on_a_tiny_llama_trains_every_role_and_reports_loss_and_perplexity(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "lm"
    result = invoke(["run", "--budget", "3k", "--task", f"lm:{tiny['chat']}", "--model", str(tiny["llama"]),
                     "--trials", "4", "--max-train-steps", "2", "--score-batches", "1", "--batch-size", "8", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    results = json.loads((out / "results.json").read_text())
    # The site table maps the Llama modules to the six roles of the lora space, in both layers.
    sites = {s["key"]: s["name"] for s in results["sites"]}
    for layer in (0, 1):
        for role, module in ROLES.items():
            assert sites[f"L{layer}.{role}"] == f"model.layers.{layer}.{module}"
    # Every role was scored (the search chooses among all of them) and the winner only uses real sites.
    scores = json.loads((out / "scores.json").read_text())
    assert {s["role"] for s in scores["sites"]} == set(ROLES)
    assert set(results["allocation"]["lora"]) <= set(sites) and sum(results["allocation"]["lora"].values()) > 0
    # The trained winner carries LoRA tensors exactly where the allocation puts a rank.
    from safetensors.torch import load_file

    saved = load_file(str(out / "adapter_model.safetensors"))
    ranks = results["allocation"]["lora"]
    for key, name in sites.items():
        a = saved.get(f"{name}.hs_lora_A")
        assert (a is not None) == (ranks.get(key, 0) > 0), key
        if a is not None:
            assert ranks[key] in a.shape, (key, a.shape)
    verify = json.loads((out / "verify.json").read_text())
    for label in ("winner", "baseline"):
        for split in ("val", "test"):
            m = verify[label]["splits"][split]
            assert set(m) == {"loss", "perplexity"} and math.isfinite(m["loss"]) and m["loss"] > 0
            assert m["perplexity"] == pytest.approx(math.exp(m["loss"]))
    c = verify["comparison"]
    assert c["metric"] == "loss" and c["split"] == "test" and c["lower_is_better"] is True
    expected = "winner" if c["winner"] < c["baseline"] else "baseline" if c["winner"] > c["baseline"] else "tie"
    assert c["better"] == expected
    assert results["splits"]["test_from"] == "carved from train" and results["splits"]["report_split"] == "test"
    assert "lower is better" in (out / "report.md").read_text()
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"


def test_lora_on_every_role_of_the_causal_lm_trains(tiny: dict[str, Path]) -> None:
    """Rank 1 on all twelve sites of the causal LM: every role gets adapter tensors and a finite loss."""
    from heterosearch.adapters import apply_allocation, count_adapter_params
    from heterosearch.models import discover_sites, load_model
    from heterosearch.space.allocation import Allocation
    from heterosearch.tasks.batching import collate
    from heterosearch.tasks.lm import encode_lm

    model, tok = load_model(str(tiny["llama"]), 0, 0, causal_lm=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok.pad_token == tok.eos_token == "</s>" and model.config.pad_token_id == tok.eos_token_id  # set from eos
    sites = [s for s in discover_sites(model) if s.role in ROLES]
    assert {s.role for s in sites} == set(ROLES) and len(sites) == 12
    apply_allocation(model, sites, Allocation(lora={s.key: 1 for s in sites}), 2.0, seed=0)
    assert count_adapter_params(model) == sum(s.d_in + s.d_out for s in sites)
    enc = encode_lm(tok, [("the cat sat ?", "on the mat ."), ("a dog ran ?", "home .")], 32)
    model.train()
    loss = model(**collate(tok, enc, [0, 1])).loss
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    grads = {s.role for s in sites for n, p in model.named_parameters() if s.name in n and p.grad is not None}
    assert grads == set(ROLES)


def test_csv_classification_run_on_tiny_bert(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "csv"
    result = invoke(["run", "--budget", "2k", "--task", str(tiny["reviews"]), "--text-columns", "review",
                     "--label-column", "sentiment", "--model", str(tiny["bert"]), "--trials", "4",
                     "--max-train-steps", "2", "--score-batches", "1", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    results = json.loads((out / "results.json").read_text())
    sp = results["splits"]
    assert sp["test_from"] == "carved from train" and "no test/dev file" in sp["roles"]["test"]
    assert sp["train_examples"] + sp["val_examples"] + sp["test_examples"] == 60
    assert set(results["verify"]["winner"]["splits"]["test"]) == {"accuracy", "f1"}
    assert results["verify"]["comparison"]["lower_is_better"] is False
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["text_columns"] == "review" and config["label_column"] == "sentiment"
    assert "carved from the training file because no test/dev file was given" in (out / "report.md").read_text()


def test_regression_head_starts_at_the_mean_training_label(tiny: dict[str, Path], tmp_path: Path) -> None:
    """models/head.py: every model a regression run builds (its own, the verification jobs') starts
    its head's output bias at the mean of the train split's labels, not val's or test's."""
    import torch

    from heterosearch.evidence.jobs import model_factory
    from heterosearch.models import load_model
    from heterosearch.pipeline import Run, RunConfig

    def run_for(label: str, problem: str) -> Any:
        cfg = RunConfig(budget=2000, task=str(tiny["reviews"]), model=str(tiny["bert"]), text_columns="review",
                        label_column=label, problem=problem, out=str(tmp_path / label))
        return Run(cfg=cfg, out=tmp_path / label)

    run = run_for("stars", "regression")
    train = [float(x) for x in run.held_out.train.labels]
    others = [float(x) for x in run.held_out.val.labels + run.held_out.test.labels]
    mean = sum(train) / len(train)
    assert abs(mean - sum(others) / len(others)) > 1e-3  # the split matters: a wrong one would show
    for model in (run.new_model(), run.new_model(seed=3), model_factory(run, 5)(), run.take_model()):
        assert model.classifier.bias.shape == (1,) and float(model.classifier.bias.detach()) == pytest.approx(mean)
    base, _ = load_model(str(tiny["bert"]), 1, 0)
    assert float(base.classifier.bias.detach()) != pytest.approx(mean)
    assert torch.equal(run.new_model().classifier.weight, base.classifier.weight)  # only the bias moves

    clf = run_for("sentiment", "classification")
    plain, _ = load_model(str(tiny["bert"]), 2, 0)
    assert torch.equal(clf.new_model().classifier.bias, plain.classifier.bias)  # classification: untouched


def test_csv_run_on_a_tiny_deberta_v2_adapts_every_role(tiny: dict[str, Path], tmp_path: Path) -> None:
    """DeBERTa-v2 names q, k, v query_proj/key_proj/value_proj: once they were missed and the q,v baseline had 0 parameters."""
    # Ranks without 0: the search must give every site a rank, so the allocation spans every role
    # and a site the pipeline missed would show as a missing key, not as a rank-0 choice.
    space = tmp_path / "every-site.yaml"
    space.write_text("name: every-site\nversion: 1\nkinds:\n  lora:\n    roles: [q, k, v, o, ffn_in, ffn_out]\n"
                     "    ranks: [1, 2, 4]\nbaseline:\n  roles: [q, v]\n", encoding="utf-8")
    out = tmp_path / "deberta"
    result = invoke(["run", "--budget", "1.5k", "--task", str(tiny["reviews"]), "--text-columns", "review",
                     "--label-column", "sentiment", "--model", str(tiny["deberta"]), "--space", str(space),
                     "--trials", "4", "--max-train-steps", "2", "--score-batches", "1", "--batch-size", "8",
                     "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    results = json.loads((out / "results.json").read_text())
    sites = {s["key"]: s["name"] for s in results["sites"]}
    for layer in (0, 1):
        for role, module in DEBERTA_ROLES.items():
            assert sites[f"L{layer}.{role}"] == f"deberta.encoder.layer.{layer}.{module}"
    ranks = results["allocation"]["lora"]
    assert set(ranks) == set(sites) and all(r >= 1 for r in ranks.values())
    assert results["params"] <= 1500
    # The trained winner has LoRA tensors on every role, q, k and v included.
    from safetensors.torch import load_file

    saved = load_file(str(out / "adapter_model.safetensors"))
    assert {key.split(".", 1)[1] for key, name in sites.items() if f"{name}.hs_lora_A" in saved} == set(DEBERTA_ROLES)
    verify = json.loads((out / "verify.json").read_text())
    for label in ("winner", "baseline"):
        for split in ("val", "test"):
            m = verify[label]["splits"][split]
            assert set(m) == {"accuracy", "f1"} and all(0.0 <= v <= 1.0 for v in m.values()), (label, split, m)
    # The uniform baseline on q, v is a real one: rank r on the four q/v sites, never 0 parameters.
    assert verify["baseline"]["params"] > 0 and verify["baseline"]["params"] % (4 * (32 + 32)) == 0
    assert verify["comparison"]["metric"] == "accuracy" and verify["comparison"]["lower_is_better"] is False
    assert results["splits"]["train_examples"] + results["splits"]["val_examples"] + results["splits"]["test_examples"] == 60


# -- splits and inference -------------------------------------------------------------------------
def test_folder_with_validation_and_test_files_uses_them_and_carves_nothing(tmp_path: Path) -> None:
    rows = review_rows(30)
    write_csv(tmp_path / "train.csv", rows[:20], ["review", "stars", "sentiment"])
    (tmp_path / "validation.jsonl").write_text(
        "".join(json.dumps({"review": r[0], "stars": r[1], "sentiment": r[2]}) + "\n" for r in rows[20:25]))
    (tmp_path / "test.tsv").write_text("review\tstars\tsentiment\n" + "".join(f"{r[0]}\t{r[1]}\t{r[2]}\n" for r in rows[25:]))
    data = load_task(str(tmp_path), text_columns="review", label_column="sentiment")
    assert data.spec.label_map == {"neg": 0, "pos": 1} and data.spec.kind == "user"
    h = held_out(data, 0.1, 0, classification=True)
    assert (len(h.train), len(h.val), len(h.test)) == (20, 5, 5)
    assert h.val.source.endswith("validation.jsonl") and h.test.source.endswith("test.tsv")
    assert h.info["test_from"] == "the test file" and "validation file" in h.info["roles"]["val"]


def test_carved_splits_are_seeded_stratified_and_disjoint(tmp_path: Path) -> None:
    rows = [[f"text {i}", "a" if i % 4 else "b"] for i in range(80)]  # 60 a, 20 b
    data = load_task(str(write_csv(tmp_path / "d.csv", rows, ["text", "label"])))
    h1, h2 = (held_out(data, 0.1, 3, classification=True) for _ in range(2))
    assert [t for t in h1.test.texts] == [t for t in h2.test.texts]  # seeded
    for part in (h1.test, h1.val):
        assert sorted(part.labels) == [0] * 6 + [1] * 2 or sorted(part.labels) == [0] * 5 + [1] * 2  # stratified
    seen = [set(p.texts) for p in (h1.train, h1.val, h1.test)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(map(len, seen)) == 80


@pytest.mark.parametrize(("labels", "problem", "num_labels"), [
    (["pos", "neg"] * 15, "classification", 2),  # strings
    ([1, 2, 3] * 10, "classification", 3),  # few integers
    ([round(0.137 * i, 3) for i in range(30)], "regression", 1),  # many distinct non-integers
])
def test_problem_is_inferred_when_unambiguous(tmp_path: Path, labels: list[Any], problem: str, num_labels: int) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"t {i}", "label": y}) + "\n" for i, y in enumerate(labels)))
    spec = load_task(str(path)).spec
    assert spec.num_labels == num_labels and spec.is_regression == (problem == "regression")


def test_ambiguous_labels_ask_for_problem(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [[f"t {i}", 0.5 * (i % 5)] for i in range(30)], ["text", "label"])  # 5 values
    with pytest.raises(UserError, match="pass --problem classification or --problem regression"):
        load_task(str(path))
    assert load_task(str(path), problem="regression").spec.is_regression


def test_task_slugs_name_folders() -> None:
    assert [task_slug(t) for t in ("mrpc", "data/reviews.csv", "lm:chat.jsonl", "hub:org/ds")] == [
        "mrpc", "reviews", "lm-chat", "org_ds"]


def test_hub_dataset_splits_become_tables_and_hidden_test_labels_are_dropped() -> None:
    import datasets

    from heterosearch.tasks.tables import hub_tables
    from heterosearch.tasks.user_data import build_user_task

    part = {"sentence": [f"s {i}" for i in range(12)], "label": [i % 2 for i in range(12)]}
    dsd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(part),
                                "validation": datasets.Dataset.from_dict(part),
                                "test": datasets.Dataset.from_dict({**part, "label": [-1] * 12})})
    tables = hub_tables(dsd, "hub:x")
    assert set(tables) == {"train", "val"}  # the unlabelled test split is left out: the report split is carved
    data = build_user_task(tables, "x", "hub:x", None, None, None)
    assert data.spec.text_columns == ("sentence",) and data.dev is None and len(data.val) == 12


# -- the LM objective -----------------------------------------------------------------------------
def test_lm_labels_are_ignored_on_prompt_and_padding(tiny: dict[str, Path]) -> None:
    from heterosearch.models import load_model
    from heterosearch.tasks.batching import IGNORE, collate
    from heterosearch.tasks.lm import encode_lm

    _, tok = load_model(str(tiny["llama"]), 0, 0, causal_lm=True)
    enc = encode_lm(tok, [("the cat sat ?", "on the mat ."), ("a ?", "home .")], 32)
    f = enc.features[0]
    n_prompt = len(tok("the cat sat ?")["input_ids"])
    assert f["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert f["labels"][n_prompt:] == f["input_ids"][n_prompt:] and f["input_ids"][-1] == tok.eos_token_id
    batch = collate(tok, enc, [0, 1])
    short = len(enc.features[1]["input_ids"])
    assert batch["labels"][1, short:].eq(IGNORE).all() and batch["attention_mask"][1, short:].eq(0).all()
    assert batch["labels"].shape == batch["input_ids"].shape


def test_lm_eval_loss_is_the_mean_over_response_tokens(tiny: dict[str, Path]) -> None:
    import torch

    from heterosearch.models import load_model
    from heterosearch.tasks.batching import collate
    from heterosearch.tasks.lm import encode_lm
    from heterosearch.train.loop import evaluate_split

    model, tok = load_model(str(tiny["llama"]), 0, 0, causal_lm=True)
    enc = encode_lm(tok, [("the cat sat ?", "on the mat ."), ("a ?", "home .")], 32)
    metrics, loss, trivial = evaluate_split(model, tok, enc, None, 2)
    with torch.no_grad():  # the model's own (token-mean) loss over both examples in one batch
        expected = float(model(**collate(tok, enc, [0, 1])).loss)
    assert loss == pytest.approx(expected, rel=1e-5) and metrics["perplexity"] == pytest.approx(math.exp(expected))
    assert trivial is False


def test_paired_wins_follow_the_metric_direction() -> None:
    from heterosearch.evidence.statistics import paired_comparison
    from heterosearch.tasks._metrics import compare

    lower = paired_comparison({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.5, 2: 2.0}, higher_is_better=False)
    assert (lower["wins"], lower["losses"]) == (2, 1)
    higher = paired_comparison({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.5, 2: 2.0})
    assert (higher["wins"], higher["losses"]) == (1, 2)
    c = compare("loss", "test", {"splits": {"test": {"loss": 2.0}}}, {"splits": {"test": {"loss": 2.5}}})
    assert c["better"] == "winner" and c["winner_minus_baseline"] == -0.5
    c = compare("accuracy", "test", {"splits": {"test": {"accuracy": 0.6}}}, {"splits": {"test": {"accuracy": 0.7}}})
    assert c["better"] == "baseline"


# -- bad input: one line, exit 2, nothing written -------------------------------------------------
def _bad(tiny: dict[str, Path], out: Path, task: str, *extra: str) -> list[str]:
    return ["run", "--budget", "2k", "--task", task, "--model", str(tiny["bert"]), "--trials", "2",
            "--max-train-steps", "1", "--out", str(out), *extra]


def test_missing_column_is_one_line(tiny: dict[str, Path], tmp_path: Path) -> None:
    one_line_error(invoke(_bad(tiny, tmp_path / "out", str(tiny["reviews"]), "--text-columns", "body")),
                   "missing column 'body'", "review, stars, sentiment")
    assert not (tmp_path / "out").exists()


def test_missing_lm_fields_is_one_line(tiny: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"question": "a", "answer": "b"}\n')
    one_line_error(invoke(_bad(tiny, tmp_path / "out", f"lm:{path}")), "missing column 'text'", "'prompt' and 'response'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", ["", "\n\n", "review,sentiment\n"])
def test_empty_file_is_one_line(tiny: dict[str, Path], tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    line = one_line_error(invoke(_bad(tiny, tmp_path / "out", str(path))), str(path))
    assert "empty file" in line or "no data rows" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", ["nowhere.csv", "./nowhere/", "lm:nowhere.jsonl"])
def test_file_that_does_not_exist_is_one_line(tiny: dict[str, Path], tmp_path: Path, task: str) -> None:
    one_line_error(invoke(_bad(tiny, tmp_path / "out", str(tmp_path / task) if not task.startswith("lm:")
                               else f"lm:{tmp_path / task[3:]}")), "no such file")
    assert not (tmp_path / "out").exists()


def test_label_that_does_not_parse_is_one_line(tiny: dict[str, Path], tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [[f"t {i}", 0.37 * i] for i in range(29)] + [["t x", "abc"]], ["text", "label"])
    one_line_error(invoke(_bad(tiny, tmp_path / "out", str(path), "--problem", "regression")),
                   f"{path}:31", "bad label 'abc'")
    assert not (tmp_path / "out").exists()


def test_unknown_problem_is_one_line(tiny: dict[str, Path], tmp_path: Path) -> None:
    one_line_error(invoke(_bad(tiny, tmp_path / "out", str(tiny["reviews"]), "--problem", "ranking")),
                   "unknown --problem 'ranking'", "classification or regression")
    assert not (tmp_path / "out").exists()


def test_unreachable_hub_dataset_is_one_line(tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    one_line_error(invoke(_bad(tiny, tmp_path / "out", "hub:no-such-org/no-such-dataset")),
                   "dataset hub could not load it", "pass a CSV/TSV/JSON/JSONL file")
    assert not (tmp_path / "out").exists()


def test_glue_only_and_user_only_options_do_not_mix(tiny: dict[str, Path], tmp_path: Path) -> None:
    one_line_error(invoke(_bad(tiny, tmp_path / "out", "mrpc", "--label-column", "y")), "--label-column", "your own data")
    one_line_error(invoke(_bad(tiny, tmp_path / "out", str(tiny["reviews"]), "--data-dir", str(tmp_path))),
                   "--data-dir is for GLUE tasks")
