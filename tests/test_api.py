"""The Python API: search -> LoraConfig / apply / save / load, and the README's example, on a tiny BERT."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

import heterosearch
from heterosearch.errors import UserError
from tests.tiny_run import WORDS, make_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread_module")
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert")


def tiny(tiny_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


def dataset(tokenizer: Any, n: int = 64) -> Any:
    from datasets import Dataset

    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + i % 5)) for i in range(n)]
    return Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(n)]}).map(
        lambda b: tokenizer(b["text"], truncation=True), batched=True)


def test_search_returns_a_lora_config_peft_accepts(tiny_dir: Path) -> None:
    from peft import get_peft_model

    model, tok = tiny(tiny_dir)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    result = heterosearch.search(model, dataset(tok), budget="2k", tokenizer=tok)
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())  # scored, not changed
    assert 0 < result.params <= 2000 and result.allocation.lora
    assert result.params == result.allocation.params(result.sites)
    peft_model = get_peft_model(model, result.lora_config())
    assert sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n) == result.params


def test_dataloader_and_task_name_inputs(tiny_dir: Path) -> None:
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    model, tok = tiny(tiny_dir)
    ds = dataset(tok).remove_columns("text")
    loader = DataLoader(ds, batch_size=8, collate_fn=DataCollatorWithPadding(tok))
    a = heterosearch.search(model, loader, budget="2k")
    assert 0 < a.params <= 2000
    b = heterosearch.search(model, "mrpc", budget="2k", tokenizer=tok, score_batches=2, max_length=64)
    assert 0 < b.params <= 2000


def test_apply_save_and_load_rebuild_the_same_adapters(tiny_dir: Path, tmp_path: Path) -> None:
    from heterosearch.adapters import count_adapter_params

    model, tok = tiny(tiny_dir)
    result = heterosearch.search(model, dataset(tok), budget="3k", tokenizer=tok)
    assert count_adapter_params(result.apply(tiny(tiny_dir)[0])) == result.params
    out = result.save(tmp_path / "saved")
    assert (out / "allocation.json").is_file() and (out / "adapter_config.json").is_file()
    again = heterosearch.load(out, model=tiny(tiny_dir)[0])
    assert count_adapter_params(again) == result.params


@pytest.mark.parametrize("kwargs, fragment", [
    ({"budget": "-5"}, "budget"),
    ({"budget": "2k", "proxy": "nope"}, "nope"),
    ({"budget": "2k", "objective": "hyperband"}, "objective 'hyperband'"),  # train is an objective now
    ({"budget": "2k", "seed": -1}, "seed"),
])
def test_bad_arguments_raise_user_errors(tiny_dir: Path, kwargs: dict[str, Any], fragment: str) -> None:
    model, tok = tiny(tiny_dir)
    with pytest.raises(UserError, match=re.escape(fragment)):
        heterosearch.search(model, dataset(tok, 16), tokenizer=tok, **kwargs)


def test_untokenized_dataset_is_a_user_error(tiny_dir: Path) -> None:
    from datasets import Dataset

    model, tok = tiny(tiny_dir)
    with pytest.raises(UserError, match="tokenize it first"):
        heterosearch.search(model, Dataset.from_dict({"text": ["a b"], "label": [0]}), budget="2k")


def test_readme_example_runs(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's API block, verbatim except for the model id (no hub here)."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- api-example")[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert "heterosearch.search(" in block and "Trainer(" in block
    code, n = re.subn(r'^model_id = .*$', f"model_id = {str(tiny_dir)!r}", block, flags=re.M)
    assert n == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert (tmp_path / "hs-allocation" / "allocation.json").is_file()
