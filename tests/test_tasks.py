"""Tests for the GLUE task layer: registry, TSV loading (local, packaged, hub) and metrics."""

from __future__ import annotations

import math
import sys
import types
import warnings
from pathlib import Path

import pytest

from heterosearch.errors import UserError
from heterosearch.tasks import TASKS, Split, TaskData, TaskSpec, compute_metrics, load_task_data

GLUE = Path(__file__).resolve().parents[2] / "shared/data/glue"

EXPECTED_ROWS = {  # task -> (glue folder, train rows, dev rows), from the GLUE README
    "rte": ("RTE", 2490, 277),
    "stsb": ("STS-B", 5749, 1500),
    "sst2": ("SST-2", 67349, 872),
}


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _one_line(exc: pytest.ExceptionInfo[UserError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- registry


def test_registry_names_and_aliases() -> None:
    assert TASKS.names() == ["cola", "mrpc", "rte", "sst2", "stsb"]
    assert TASKS.get("sts-b") is TASKS.get("stsb") is TASKS.get("STS_B")
    assert TASKS.get("SST-2").name == "sst2"
    assert "sst-2" in TASKS and "qqp" not in TASKS
    spec = TASKS.get("mrpc")
    assert spec.text_columns == ("#1 String", "#2 String")
    assert spec.label_column == "Quality" and spec.metrics == ("accuracy", "f1")
    assert TASKS.get("rte").label_map == {"entailment": 0, "not_entailment": 1}
    stsb = TASKS.get("stsb")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.label_map is None
    assert stsb.metrics == ("pearson", "spearman")
    assert not TASKS.get("cola").has_header and TASKS.get("cola").metrics == ("matthews",)
    assert all(not TASKS.get(n).test_has_labels for n in TASKS.names())


def test_registry_unknown_name_suggests() -> None:
    with pytest.raises(UserError) as exc:
        TASKS.get("mrcp")
    message = _one_line(exc)
    assert "did you mean 'mrpc'?" in message and "'mrcp'" in message
    assert "available: cola, mrpc, rte, sst2, stsb" in message


def test_spec_is_frozen_and_validated() -> None:
    spec = TASKS.get("mrpc")
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        TaskSpec("x", "X", ("a",), "l", {"0": 0}, 2, ("accuracy",), "f1", ("glue", "x"), hub_text_columns=("a",))


# ---------------------------------------------------------------- packaged MRPC


def test_packaged_mrpc() -> None:
    data = load_task_data("mrpc")
    assert isinstance(data, TaskData) and data.spec is TASKS.get("mrpc")
    assert data.source.startswith("package:")
    assert (len(data.train), len(data.dev)) == (3668, 408)
    assert data.test is not None and len(data.test) == 1725 and data.test.labels is None
    assert data.train.source.endswith("train.tsv") and Path(data.train.source).is_file()
    # First train row contains bare quotes: QUOTE_NONE must keep it as one row.
    assert data.train.texts[0][0].startswith("Amrozi accused his brother")
    assert '" the witness "' in data.train.texts[0][0]
    assert data.train.labels[:4] == [1, 0, 1, 0]
    assert set(data.dev.labels) == {0, 1}
    assert sum(data.dev.labels) == 279  # GLUE MRPC dev: 279 paraphrases out of 408
    assert all(len(t) == 2 for t in data.test.texts)


# ---------------------------------------------------------------- shared GLUE copy


@pytest.mark.parametrize("task", ["rte", "stsb", "sst2"])
@pytest.mark.parametrize("as_root", [True, False])
def test_shared_glue(task: str, as_root: bool) -> None:
    folder, n_train, n_dev = EXPECTED_ROWS[task]
    if not (GLUE / folder / "train.tsv").is_file():
        pytest.skip(f"no GLUE copy at {GLUE / folder}")
    data = load_task_data(task, GLUE if as_root else GLUE / folder)
    assert data.source == str(GLUE / folder)
    assert (len(data.train), len(data.dev)) == (n_train, n_dev)
    assert data.test is None
    spec = TASKS.get(task)
    assert all(len(t) == len(spec.text_columns) for t in data.dev.texts)
    assert len(data.dev.labels) == n_dev
    if spec.is_regression:
        assert all(isinstance(x, float) and 0.0 <= x <= 5.0 for x in data.train.labels)
        assert data.dev.labels[0] == 5.0
    else:
        assert set(data.train.labels) == {0, 1}
    if task == "rte":
        assert data.dev.labels[0] == 1  # first dev row is not_entailment
        assert data.dev.texts[0][1] == "Christopher Reeve had an accident."


def test_alias_with_glue_root() -> None:
    if not (GLUE / "STS-B" / "train.tsv").is_file():
        pytest.skip(f"no GLUE copy at {GLUE}")
    assert len(load_task_data("sts-b", str(GLUE)).dev) == 1500


# ---------------------------------------------------------------- local folders, malformed data

RTE_HEADER = "index\tsentence1\tsentence2\tlabel"


def _rte(folder: Path, train: list[str] | None = None, dev: list[str] | None = None) -> Path:
    _write(folder / "train.tsv", train or [RTE_HEADER, 'a\t"quoted\tb\tentailment', "1\tc\td\tnot_entailment"])
    _write(folder / "dev.tsv", dev or [RTE_HEADER, "0\te\tf\tentailment", ""])
    return folder


def test_tmp_glue_root_and_lowercase_folder(tmp_path: Path) -> None:
    _rte(tmp_path / "rte")  # lower-case mirror name is accepted like "RTE"
    data = load_task_data("rte", tmp_path)
    assert data.train.texts == [('"quoted', "b"), ("c", "d")]
    assert data.train.labels == [0, 1]
    assert data.dev.texts == [("e", "f")] and data.dev.labels == [0]  # trailing blank line ignored


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError) as exc:
        load_task_data("rte", tmp_path / "nope")
    message = _one_line(exc)
    assert str(tmp_path / "nope") in message and "DIR/RTE/train.tsv" in message


def test_folder_without_tsvs(tmp_path: Path) -> None:
    with pytest.raises(UserError) as exc:
        load_task_data("rte", tmp_path)
    assert str(tmp_path) in _one_line(exc) and "DIR/train.tsv, dev.tsv" in str(exc.value)
    _write(tmp_path / "RTE" / "train.tsv", [RTE_HEADER, "0\ta\tb\tentailment"])
    with pytest.raises(UserError, match=r"missing dev\.tsv"):
        load_task_data("rte", tmp_path)


def test_missing_column(tmp_path: Path) -> None:
    _rte(tmp_path, train=["index\tsentence1\tlabel", "0\ta\tentailment"])
    with pytest.raises(UserError) as exc:
        load_task_data("rte", tmp_path)
    message = _one_line(exc)
    assert message.startswith(str(tmp_path / "train.tsv")) and "missing column 'sentence2'" in message


def test_bad_label(tmp_path: Path) -> None:
    _rte(tmp_path, dev=[RTE_HEADER, "0\te\tf\tentailment", "1\tg\th\tneutral"])
    with pytest.raises(UserError) as exc:
        load_task_data("rte", tmp_path)
    assert _one_line(exc) == (
        f"{tmp_path / 'dev.tsv'}:3: bad label 'neutral' (expected one of 'entailment', 'not_entailment')"
    )


def test_bad_regression_label(tmp_path: Path) -> None:
    header = "index\tsentence1\tsentence2\tscore"
    _write(tmp_path / "train.tsv", [header, "0\ta\tb\t4.5", "1\tc\td\tnan"])
    _write(tmp_path / "dev.tsv", [header, "0\ta\tb\t1"])
    with pytest.raises(UserError, match=r"train\.tsv:3: bad label 'nan' \(expected a number\)"):
        load_task_data("stsb", tmp_path)


def test_wrong_field_count(tmp_path: Path) -> None:
    _rte(tmp_path, train=[RTE_HEADER, "0\ta\tb\tentailment", "1\tstray\ttab\tc\tentailment"])
    with pytest.raises(UserError) as exc:
        load_task_data("rte", tmp_path)
    assert _one_line(exc) == f"{tmp_path / 'train.tsv'}:3: expected 4 tab-separated fields, found 5"


def test_empty_and_header_only(tmp_path: Path) -> None:
    _rte(tmp_path)
    (tmp_path / "dev.tsv").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match=r"dev\.tsv: empty file"):
        load_task_data("rte", tmp_path)
    _write(tmp_path / "dev.tsv", [RTE_HEADER])
    with pytest.raises(UserError, match=r"dev\.tsv: header but no data rows"):
        load_task_data("rte", tmp_path)


def test_test_split_labels(tmp_path: Path) -> None:
    _rte(tmp_path)
    _write(tmp_path / "test.tsv", ["index\tsentence1\tsentence2", "0\tx\ty"])
    data = load_task_data("rte", tmp_path)
    assert data.test is not None and data.test.texts == [("x", "y")] and data.test.labels is None
    _write(tmp_path / "test.tsv", [RTE_HEADER, "0\tx\ty\tnot_entailment"])  # labelled test is kept
    assert load_task_data("rte", tmp_path).test.labels == [1]


def test_cola_headerless(tmp_path: Path) -> None:
    _write(tmp_path / "CoLA" / "train.tsv", ["gj04\t1\t\tOur friends won't buy this.", "gj04\t0\t*\tThey drank the pub."])
    _write(tmp_path / "CoLA" / "dev.tsv", ["gj04\t1\t\tThe sailors rode the breeze."])
    _write(tmp_path / "CoLA" / "test.tsv", ["index\tsentence", "0\tBill whistled past the house."])
    data = load_task_data("cola", tmp_path)
    assert data.train.texts == [("Our friends won't buy this.",), ("They drank the pub.",)]
    assert data.train.labels == [1, 0] and data.dev.labels == [1]
    assert data.test.texts == [("Bill whistled past the house.",)] and data.test.labels is None
    _write(tmp_path / "CoLA" / "dev.tsv", ["gj04\tx\t\tThe sailors rode the breeze."])
    with pytest.raises(UserError, match=r"dev\.tsv:1: bad label 'x'"):
        load_task_data("cola", tmp_path)


# ---------------------------------------------------------------- hub fallback


def _fake_datasets(monkeypatch: pytest.MonkeyPatch, load_dataset: object) -> None:
    """A stand-in ``datasets`` module: importing the real one costs ~1.5 s per test run."""
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hub_unreachable_is_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []

    def offline(*args: str) -> None:
        calls.append(args)
        raise ConnectionError("Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError)\nlong trace")

    _fake_datasets(monkeypatch, offline)
    with pytest.raises(UserError) as exc:
        load_task_data("rte")
    assert calls == [("glue", "rte")]
    assert _one_line(exc) == (
        "no local data for task 'rte': pass --data-dir DIR (GLUE TSV layout: DIR/RTE/train.tsv, dev.tsv); "
        "the dataset hub could not be reached "
        "(ConnectionError: Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError))"
    )


def test_hub_not_used_for_packaged_mrpc(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_datasets(monkeypatch, lambda *a: pytest.fail("hub must not be queried"))
    assert len(load_task_data("mrpc").dev) == 408


def test_hub_success_converts(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = {
        "train": {"sentence": ["good", "bad"], "label": [1, 0], "idx": [0, 1]},
        "validation": {"sentence": ["fine"], "label": [1], "idx": [0]},
        "test": {"sentence": ["hidden"], "label": [-1], "idx": [0]},
    }
    _fake_datasets(monkeypatch, lambda path, config: fake)
    data = load_task_data("sst-2")
    assert data.source == "hub:glue/sst2"
    assert data.train == Split([("good",), ("bad",)], [1, 0], "hub:glue/sst2:train")
    assert data.dev.labels == [1] and data.test is not None and data.test.labels is None


# ---------------------------------------------------------------- metrics


def test_metrics_classification() -> None:
    mrpc = TASKS.get("mrpc")
    # tp=2 fp=1 fn=1 tn=1 -> acc 3/5, f1 = 2*2/(2*2+1+1) = 2/3
    out = compute_metrics(mrpc, [1, 1, 0, 1, 0], [1, 1, 1, 0, 0])
    assert out == pytest.approx({"accuracy": 0.6, "f1": 2 / 3})
    assert all(type(v) is float for v in out.values())
    assert compute_metrics(mrpc, [0, 0, 0], [1, 0, 1]) == {"accuracy": pytest.approx(1 / 3), "f1": 0.0}
    assert compute_metrics(mrpc, [0, 0], [0, 0]) == {"accuracy": 1.0, "f1": 0.0}
    assert compute_metrics(TASKS.get("rte"), [1, 0, 1, 1], [1, 1, 1, 1]) == {"accuracy": 0.75}


def test_metrics_matthews() -> None:
    cola = TASKS.get("cola")
    # tp=2 tn=1 fp=1 fn=1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    assert compute_metrics(cola, [1, 1, 0, 1, 0], [1, 1, 1, 0, 0])["matthews"] == pytest.approx(1 / 6)
    assert compute_metrics(cola, [1, 0, 1, 0], [1, 0, 1, 0]) == {"matthews": 1.0}
    assert compute_metrics(cola, [0, 1, 0, 1], [1, 0, 1, 0]) == {"matthews": -1.0}
    assert compute_metrics(cola, [1, 1, 1, 1], [1, 0, 1, 0]) == {"matthews": 0.0}  # constant predictor


def test_metrics_regression() -> None:
    stsb = TASKS.get("stsb")
    # (1,2,3,4) vs (1,3,2,4): cov 4, var 5 and 5 -> r = 0.8; values are their own ranks -> rho = 0.8
    out = compute_metrics(stsb, [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert out == pytest.approx({"pearson": 0.8, "spearman": 0.8})
    # monotone but non-linear: spearman exactly 1, pearson below 1
    x = [1.0, 2.0, 3.0, 10.0]
    out = compute_metrics(stsb, x, [1.0, 2.0, 3.0, 4.0])
    assert out["spearman"] == pytest.approx(1.0) and 0.8 < out["pearson"] < 0.99
    assert out["pearson"] == pytest.approx(14 / math.sqrt(250))  # cov 14, var 50 and 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # constant input must not warn
        assert compute_metrics(stsb, [2.5, 2.5, 2.5], [1.0, 2.0, 3.0]) == {"pearson": 0.0, "spearman": 0.0}
        assert compute_metrics(stsb, [0.5], [1.0]) == {"pearson": 0.0, "spearman": 0.0}
    out = compute_metrics(stsb, [3.0, 2.0, 1.0], [1.0, 2.0, 3.0])
    assert out == pytest.approx({"pearson": -1.0, "spearman": -1.0})


def test_metrics_reject_bad_input() -> None:
    mrpc = TASKS.get("mrpc")
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        compute_metrics(mrpc, [0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="class ids"):
        compute_metrics(mrpc, [0.2, 0.9], [0, 1])
    with pytest.raises(ValueError, match="without labels"):
        compute_metrics(mrpc, [0, 1], None)


def test_the_recipe_epochs_are_the_tasks_own_where_it_has_them(tmp_path: Path) -> None:
    """RTE trains 10 epochs by default (3 leave uniform LoRA at chance there), every other task the
    recipe's; an explicit value wins, and config.json records the resolved number."""
    from heterosearch import recipe
    from heterosearch.pipeline import RunConfig
    from heterosearch.tasks import default_epochs

    assert default_epochs("rte") == default_epochs("RTE") == 10.0
    assert default_epochs("mrpc") == default_epochs("stsb") == recipe.EPOCHS
    assert default_epochs(str(tmp_path / "reviews.csv")) == recipe.EPOCHS  # a user's data: the recipe's
    rte = RunConfig(task="rte", data_dir=str(tmp_path))
    assert rte.train_epochs == 10.0 and rte.to_dict()["train_epochs"] == 10.0
    assert RunConfig(task="rte", data_dir=str(tmp_path), train_epochs=3).train_epochs == 3
    assert RunConfig(task="mrpc").train_epochs == recipe.EPOCHS
    with pytest.raises(ValueError, match="train_epochs"):
        TaskSpec(name="x", glue_dir="X", text_columns=("a",), label_column="l", label_map={"0": 0}, num_labels=2,
                 metrics=("accuracy",), main_metric="accuracy", hub_name=("x", "x"), hub_text_columns=("a",),
                 train_epochs=0.0)
