"""--device / --precision: resolution, refusals, and the CPU's bf16 autocast path end to end on a tiny run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from heterosearch.errors import UserError
from heterosearch.train.config import TrainConfig
from heterosearch.train.device import autocast, check_precision, resolve_device
from tests.tiny_run import make_glue_dir, make_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("device")
    return make_tiny_model(root / "model"), make_glue_dir(root / "data")


def test_resolution_and_refusals() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    for bad, fragment in (("tpu", "is not a device"), ("cuda:99", "CUDA"), ("", None)):
        if fragment is None:
            assert resolve_device(bad) == resolve_device("auto")  # empty = auto
            continue
        with pytest.raises(UserError, match=fragment):
            resolve_device(bad)
    with pytest.raises(UserError, match="needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(UserError, match="unknown"):
        check_precision("fp8", torch.device("cpu"))
    check_precision("bf16", torch.device("cpu"))


def test_autocast_runs_matmuls_in_bf16_on_cpu() -> None:
    a = torch.randn(4, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert (a @ a).dtype == torch.float32


def test_recipe_records_precision_but_not_the_device() -> None:
    fp32 = TrainConfig(device="cuda").to_dict()
    assert "device" not in fp32 and "precision" not in fp32  # old files (no precision) still compare equal
    assert TrainConfig(precision="bf16").to_dict()["precision"] == "bf16"


def test_bf16_training_learns_like_fp32_and_keeps_float32_adapters(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from heterosearch.pipeline import Run, RunConfig
    from heterosearch.train import train_allocation

    model_dir, data_dir = tiny
    run = Run.open(RunConfig(budget=2000, model=str(model_dir), data_dir=str(data_dir), out=str(tmp_path / "run")))
    alloc, _ = run.baseline_allocation()
    evals = {k: v for k, v in run.encoded.items() if k != "train"}
    built: list[Any] = []

    def factory() -> Any:
        built.append(run.new_model())
        return built[-1]

    results = {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(epochs=4, batch_size=16, precision=precision, device="cpu", seed=1)
        results[precision] = train_allocation(factory, run.tokenizer, run.all_sites, alloc, run.space.lora.scaling,
                                              run.encoded["train"], evals, run.spec, cfg, label=precision)
        assert all(p.dtype == torch.float32 for p in built[-1].parameters())  # autocast: weights stay float32
    fp32, bf16 = results["fp32"], results["bf16"]
    assert bf16.params == fp32.params and bf16.steps == fp32.steps
    # bf16 rounds the forward pass (8 bits of mantissa): the same training, not the same bits
    assert abs(bf16.train_loss - fp32.train_loss) < 0.05, (bf16.train_loss, fp32.train_loss)
    assert abs(bf16.eval_loss["val"] - fp32.eval_loss["val"]) < 0.05


def test_run_refuses_an_unusable_device_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from heterosearch.cli import app

    result = CliRunner().invoke(app, ["run", "--budget", "2k", "--precision", "fp16", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "needs a CUDA device" in result.stderr
    assert not (tmp_path / "r").exists()
