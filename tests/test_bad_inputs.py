"""Every bad input is answered with exit code 2 and one line naming the problem and the fix.

No traceback, and nothing is created or overwritten: a bad budget, name, data folder, YAML
file, model path, output folder or storage is caught before the run folder is touched.
The checks run in-process (typer's CliRunner) on a tiny saved BERT, so they take seconds.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from heterosearch.cli import app
from heterosearch.errors import UserError
from heterosearch.space import load_space
from heterosearch.space.budget import parse_budget
from tests.tiny_run import make_glue_dir, make_tiny_model

TINY_MIN = 64  # the tiny BERT (hidden 32): one q/k/v/o site at rank 1 costs 1 * (32 + 32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-inputs")
    return {"model": make_tiny_model(root / "model"), "data": make_glue_dir(root / "data", n_train=16, n_dev=8)}


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, env={"HETEROSEARCH_QUIET": "1"})


def one_line_error(result: Any, *must_contain: str) -> str:
    """Exit code 2, exactly one `error:` line on stderr, no traceback; returns the line."""
    everything = result.output + (result.stderr or "")
    assert "Traceback" not in everything, everything
    assert result.exit_code == 2, (result.exit_code, everything, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for text in must_contain:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def run_args(tiny: dict[str, Path], out: Path, budget: str = "2k", *extra: str) -> list[str]:
    return ["run", "--budget", budget, "--model", str(tiny["model"]), "--data-dir", str(tiny["data"]),
            "--trials", "3", "--max-train-steps", "1", "--out", str(out), *extra]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- budget ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", ["abc", "", "1.5.5", "12 parameters", "nan", "inf", "0x10", "1e400"])
def test_budget_that_is_not_a_number(tiny: dict[str, Path], tmp_path: Path, budget: str) -> None:
    line = one_line_error(invoke(run_args(tiny, tmp_path / "out", budget)), "budget")
    assert "500k" in line or "number" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("budget", ["0", "0k", "-5", "-1k", "-0.5M"])
def test_budget_zero_or_negative(tiny: dict[str, Path], tmp_path: Path, budget: str) -> None:
    one_line_error(invoke(run_args(tiny, tmp_path / "out", budget)), "budget")
    assert not (tmp_path / "out").exists()


def test_budget_below_the_cheapest_allocation_says_the_minimum(tiny: dict[str, Path], tmp_path: Path) -> None:
    line = one_line_error(invoke(run_args(tiny, tmp_path / "out", str(TINY_MIN - 1))), "below the cheapest", str(TINY_MIN))
    assert "rank 1" in line
    assert not (tmp_path / "out").exists()


def test_missing_budget(tiny: dict[str, Path], tmp_path: Path) -> None:
    args = run_args(tiny, tmp_path / "out")
    one_line_error(invoke(args[:1] + args[3:]), "--budget")


# -- names ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "closest"),
    [("--task", "mrcp", "'mrpc'"), ("--proxy", "snp", "'snip'"), ("--space", "lroa", "'lora'")],
)
def test_unknown_name_suggests_the_closest(tiny: dict[str, Path], tmp_path: Path, option: str, value: str, closest: str) -> None:
    line = one_line_error(invoke(run_args(tiny, tmp_path / "out", "2k", option, value)), "unknown", repr(value))
    assert f"did you mean {closest}" in line and "available:" in line
    assert not (tmp_path / "out").exists()


def test_unknown_kind_in_a_space_file_suggests_the_closest(tiny: dict[str, Path], tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("name: s\nversion: 1\nkinds:\n  lorra:\n    roles: [q, v]\n    ranks: [0, 1, 2]\n")
    one_line_error(invoke(run_args(tiny, tmp_path / "out", "2k", "--space", str(space))), "lorra", "did you mean 'lora'")
    one_line_error(invoke(["validate", str(space)]), "lorra")


# -- data -----------------------------------------------------------------------------------------
def test_data_folder_missing(tiny: dict[str, Path], tmp_path: Path) -> None:
    args = run_args(tiny, tmp_path / "out")
    args[args.index("--data-dir") + 1] = str(tmp_path / "nowhere")
    one_line_error(invoke(args), "nowhere", "MRPC/train.tsv")
    assert not (tmp_path / "out").exists()


def test_data_folder_without_the_task_files(tiny: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    args = run_args(tiny, tmp_path / "out")
    args[args.index("--data-dir") + 1] = str(tmp_path / "empty")
    one_line_error(invoke(args), "train.tsv")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("row", "fragment"),
    [("1\t7\tonly three fields\n", "expected 5 tab-separated fields, found 3"),
     ("maybe\t7\t8\ta b\tc d\n", "bad label 'maybe'")],
)
def test_data_with_malformed_rows(tiny: dict[str, Path], tmp_path: Path, row: str, fragment: str) -> None:
    data = make_glue_dir(tmp_path / "data", n_train=4, n_dev=4)
    with (data / "MRPC" / "train.tsv").open("a") as fh:
        fh.write(row)
    args = run_args(tiny, tmp_path / "out")
    args[args.index("--data-dir") + 1] = str(data)
    one_line_error(invoke(args), "train.tsv:6", fragment)  # file and line of the bad row
    assert not (tmp_path / "out").exists()  # so the fixed command runs without --resume


# -- YAML -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("name: s\nversion: 1\ncolour: blue\nkinds:\n  lora:\n    roles: [q]\n    ranks: [0, 1]\n", ("colour", "unknown key", "allowed:")),
        ("name: s\nversion: 1\nkinds:\n  lora:\n    roles: [q]\n    rank: [0, 1]\n", ("rank", "did you mean 'ranks'")),
        ("name: s\nversion: 1\nkinds:\n  lora:\n    roles: [q]\n    ranks: four\n", ("kinds.lora.ranks", "list of integers")),
        ("name: s\nversion: one\nkinds:\n  lora:\n    roles: [q]\n    ranks: [0, 1]\n", ("version", "integer")),
        ("name: s\nversion: 1\nkinds:\n  lora:\n    roles: q\n    ranks: [0, 1]\n", ("roles", "list")),
        ("name: s\nversion: 1\nkinds: [lora\n", ("not valid YAML", "line")),
    ],
)
def test_space_yaml_with_unknown_keys_or_wrong_types(tiny: dict[str, Path], tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(text)
    one_line_error(invoke(run_args(tiny, tmp_path / "out", "2k", "--space", str(space))), "space.yaml", *fragments)
    assert not (tmp_path / "out").exists()


# -- model ----------------------------------------------------------------------------------------
def test_model_path_that_does_not_exist(tiny: dict[str, Path], tmp_path: Path) -> None:
    args = run_args(tiny, tmp_path / "out")
    args[args.index("--model") + 1] = str(tmp_path / "no-such-model")
    one_line_error(invoke(args), "no-such-model", "does not exist")
    assert not (tmp_path / "out").exists()


def test_model_folder_without_a_config(tiny: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "not-a-model").mkdir()
    args = run_args(tiny, tmp_path / "out")
    args[args.index("--model") + 1] = str(tmp_path / "not-a-model")
    one_line_error(invoke(args), "cannot load model", "--model PATH")
    assert not (tmp_path / "out").exists()


def test_model_without_adaptable_sites(tiny: dict[str, Path], tmp_path: Path) -> None:
    from transformers import XLNetConfig

    XLNetConfig(vocab_size=100, d_model=32, n_layer=2, n_head=4, d_inner=64).save_pretrained(tmp_path / "xlnet")
    args = run_args(tiny, tmp_path / "out")
    args[args.index("--model") + 1] = str(tmp_path / "xlnet")
    one_line_error(invoke(args), "no adaptable sites", "knows BERT")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "value", "fragments"),
    [("--device", "tpu", ("--device 'tpu' is not a device", "cpu, cuda")),
     ("--device", "cuda:3", ("--device cuda:3",)),  # no CUDA: "use --device cpu"; 1-3 GPUs: "only N CUDA device(s)"
     ("--device", "mps", ("--device mps", "use --device cpu")),
     ("--precision", "fp8", ("--precision 'fp8' is unknown", "fp32, bf16, fp16")),
     ("--precision", "fp16", ("--precision fp16 needs a CUDA device", "bf16"))],
)
def test_bad_device_or_precision(tiny: dict[str, Path], tmp_path: Path, option: str, value: str,
                                 fragments: tuple[str, ...]) -> None:
    import torch

    if (value == "cuda:3" and torch.cuda.device_count() > 3) or (value == "mps" and torch.backends.mps.is_available()):
        pytest.skip(f"this machine has {value}")
    one_line_error(invoke(run_args(tiny, tmp_path / "out", "2k", option, value)), *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("section", "roles", "baseline", "fragment"),
    [("kinds.lora.roles", "[q, v, ffn_gate]", "[q, v]", "role 'ffn_gate' matches none of the model's sites"),
     ("kinds.lora.roles", "[q, v, qkv]", "[q, v]", "this model has q, k, v as separate sites"),
     ("baseline.roles", "[q, k, v, o]", "[qkv]", "role 'qkv' matches none of the model's sites"),
     ("baseline.roles", "[q, v]", "[ffn_gate]", "role 'ffn_gate' matches none of the model's sites")],
)
def test_role_that_matches_no_site_is_refused(tiny: dict[str, Path], tmp_path: Path, section: str, roles: str,
                                              baseline: str, fragment: str) -> None:
    """A role of the space or of its baseline that the model lacks: one line, never a 0-parameter baseline."""
    space = tmp_path / "space.yaml"
    space.write_text(f"name: s\nversion: 1\nkinds:\n  lora:\n    roles: {roles}\n    ranks: [0, 1, 2]\n"
                     f"baseline:\n  roles: {baseline}\n")
    one_line_error(invoke(run_args(tiny, tmp_path / "out", "2k", "--space", str(space))),
                   f"search space space.yaml: {section}", fragment, "roles: mapping")
    assert not (tmp_path / "out").exists()


# -- output folder --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def earlier_run(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (scored) run folder: `score` writes config.json and scores.json in seconds."""
    out = tmp_path_factory.mktemp("earlier") / "run"
    result = invoke(["score", "--model", str(tiny["model"]), "--data-dir", str(tiny["data"]), "--out", str(out),
                     "--score-batches", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_output_folder_from_another_run_is_refused(tiny: dict[str, Path], earlier_run: Path) -> None:
    before = snapshot(earlier_run)
    one_line_error(invoke(run_args(tiny, earlier_run)), "holds an earlier run", "--resume", "--overwrite")
    one_line_error(invoke(run_args(tiny, earlier_run, "2k", "--seed", "3", "--resume")), "cannot resume", "seed")
    # --overwrite with another bad input: the old run is not deleted first.
    one_line_error(invoke(run_args(tiny, earlier_run, "10", "--overwrite")), "below the cheapest")
    assert snapshot(earlier_run) == before


def test_output_folder_that_is_not_a_run_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8")
    one_line_error(invoke(run_args(tiny, out)), "not empty", "another --out")
    assert snapshot(out) == {"cat.jpg": b"\xff\xd8"}


def test_overwrite_never_deletes_a_folder_heterosearch_did_not_write(tiny: dict[str, Path], tmp_path: Path) -> None:
    # The data-loss regression: a foreign config.json made the folder "a run", and --overwrite
    # then removed the whole tree, precious.txt and sub/model.bin included.
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "config.json").write_text('{"learning_rate": 3e-4}')
    (out / "precious.txt").write_text("irreplaceable")
    (out / "sub" / "model.bin").write_bytes(b"\x00\x01")
    before = snapshot(out)
    for extra in (["--overwrite"], ["--resume"], []):
        one_line_error(invoke(run_args(tiny, out, "2k", *extra)), "not a heterosearch run", "nothing was changed")
        assert snapshot(out) == before


def test_overwrite_refuses_a_run_folder_holding_foreign_files(tiny: dict[str, Path], earlier_run: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "run-plus"
    shutil.copytree(earlier_run, out)
    (out / "notes.txt").write_text("mine")
    (out / "plots").mkdir(exist_ok=True)
    (out / "plots" / "figure-I-drew.svg").write_text("<svg/>")
    before = snapshot(out)
    line = one_line_error(invoke(run_args(tiny, out, "2k", "--overwrite")), "did not write", "nothing was deleted")
    assert "notes.txt" in line or "plots/figure-I-drew.svg" in line
    assert snapshot(out) == before


def test_overwrite_replaces_only_its_own_files(tiny: dict[str, Path], earlier_run: Path, tmp_path: Path) -> None:
    import shutil

    from heterosearch.run_folder import MARKER

    out = tmp_path / "replace"
    shutil.copytree(earlier_run, out)
    assert (out / MARKER).is_file()
    result = invoke(run_args(tiny, out, "2k", "--overwrite"))
    assert result.exit_code == 0, result.output
    assert (out / "results.json").is_file() and (out / MARKER).is_file()


def test_a_second_writer_on_the_same_folder_gets_one_line(tiny: dict[str, Path], earlier_run: Path) -> None:
    import subprocess
    import sys
    import time

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from heterosearch.run_folder import lock; lock(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(60)", str(earlier_run)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = snapshot(earlier_run)
        one_line_error(invoke(run_args(tiny, earlier_run, "2k", "--resume")), "another heterosearch process", f"pid {holder.pid}")
        one_line_error(invoke(["verify", str(earlier_run)]), "another heterosearch process")
        assert snapshot(earlier_run) == before
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)


@pytest.fixture(scope="module")
def searched_run(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("searched") / "run"
    result = invoke(run_args(tiny, out))
    assert result.exit_code == 0, result.output
    return out


def test_train_refuses_an_export_older_than_the_search(tiny: dict[str, Path], searched_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(searched_run, run)
    assert invoke(["search", str(run), "--budget", "1k", "--trials", "3"]).exit_code == 0
    # Another winner: the search removed the export and results made from the old one (pipeline/files.py LATER).
    assert not (run / "allocation.json").exists() and not (run / "results.json").exists()
    config = (run / "config.json").read_bytes()
    one_line_error(invoke(["train", str(run), "--max-train-steps", "1"]), "has no allocation.json", "heterosearch export")
    assert (run / "config.json").read_bytes() == config  # a failed command rewrites nothing, argv included
    assert not (run / "results.json").exists()
    assert invoke(["export", str(run)]).exit_code == 0
    assert invoke(["train", str(run), "--max-train-steps", "1"]).exit_code == 0
    assert json.loads((run / "results.json").read_text())["budget"] == 1000


def test_a_stage_refuses_inputs_made_from_files_that_changed(tiny: dict[str, Path], searched_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(searched_run, run)
    search = json.loads((run / "search.json").read_text())
    assert set(search["inputs"]) == {"scores.json"}  # every stage records what it was made from
    assert set(json.loads((run / "allocation.json").read_text())["inputs"]) == {"search.json"}
    with open(run / "scores.json", "a") as fh:
        fh.write("\n")  # scores.json rewritten since the search ran
    one_line_error(invoke(["export", str(run)]), "was made from another scores.json", "heterosearch search")
    shutil.copy(searched_run / "scores.json", run / "scores.json")
    with open(run / "search.json", "a") as fh:
        fh.write("\n")  # search.json rewritten since the export
    one_line_error(invoke(["train", str(run), "--max-train-steps", "1"]), "was made from another search.json",
                   "heterosearch export")


def test_space_whose_roles_leave_out_the_baseline_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    space = tmp_path / "ffn.yaml"
    space.write_text("name: ffn\nversion: 1\nkinds:\n  lora:\n    roles: [ffn_in, ffn_out]\n    ranks: [0, 1, 2, 4]\n"
                     "baseline:\n  roles: [q, v]\n")
    out = tmp_path / "out"
    one_line_error(invoke(run_args(tiny, out, "2k", "--space", str(space))), "compares against uniform LoRA on q,v")
    assert not out.exists()


def _tampered(searched_run: Path, tmp_path: Path, edit: Any) -> Path:
    import shutil

    run = tmp_path / "tampered"
    shutil.copytree(searched_run, run)
    data = json.loads((run / "allocation.json").read_text())
    edit(data)
    (run / "allocation.json").write_text(json.dumps(data))
    return run


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["allocation"]["lora"].update({next(iter(d["allocation"]["lora"])): 10**9}), "above min(d_in, d_out)"),
    (lambda d: d.update(scale={"rule": "rslora", "alpha": "nan"}), "scale.alpha"),
    (lambda d: d.update(scale={"rule": "rslora", "alpha": 1e300}), "field 'scale' must be a LoRA scale"),
    (lambda d: d.update(scale={"rule": "cubic", "alpha": 2}), "unknown LoRA scale rule 'cubic'"),
    (lambda d: (d.pop("scale"), d.update(scaling=1e300)), "field 'scaling' must be a LoRA scale"),
    (lambda d: d["allocation"]["lora"].update({"L99.q": 1}), "does not have"),
])
def test_load_adapters_checks_a_tampered_allocation_before_allocating(
    tiny: dict[str, Path], searched_run: Path, tmp_path: Path, edit: Any, fragment: str
) -> None:
    from transformers import AutoModelForSequenceClassification

    from heterosearch import load_adapters

    run = _tampered(searched_run, tmp_path, edit)
    model = AutoModelForSequenceClassification.from_pretrained(tiny["model"])
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_adapters(model, run)


def test_load_adapters_never_overwrites_a_base_weight(tiny: dict[str, Path], searched_run: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification

    from heterosearch import load_adapters

    run = _tampered(searched_run, tmp_path, lambda d: None)
    tensors = load_file(str(run / "adapter_model.safetensors"))
    model = AutoModelForSequenceClassification.from_pretrained(tiny["model"])
    emb = model.bert.embeddings.word_embeddings.weight
    before = emb.detach().clone()
    save_file({**tensors, "bert.embeddings.word_embeddings.weight": torch.zeros_like(emb)}, str(run / "adapter_model.safetensors"))
    with pytest.raises(UserError, match="refusing to overwrite a base-model weight"):
        load_adapters(model, run)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, before)
    name = next(iter(tensors))
    save_file({**tensors, name: torch.full_like(tensors[name], float("nan"))}, str(run / "adapter_model.safetensors"))
    with pytest.raises(UserError, match="non-finite"):
        load_adapters(AutoModelForSequenceClassification.from_pretrained(tiny["model"]), run)
    (run / "adapter_model.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_adapters(AutoModelForSequenceClassification.from_pretrained(tiny["model"]), run)


def test_one_bad_number_never_allocates(tiny: dict[str, Path], tmp_path: Path) -> None:
    # Each of these once tried to allocate gigabytes to terabytes before failing.
    space = tmp_path / "huge.yaml"
    space.write_text("name: huge\nversion: 1\nkinds:\n  lora:\n    roles: [q, v]\n    ranks: [0, 8, 100000]\n")
    one_line_error(invoke(run_args(tiny, tmp_path / "a", "2k", "--space", str(space))), "rank 100000", "remove ranks above")
    one_line_error(invoke(run_args(tiny, tmp_path / "b", "1e12")), "above the cost of fine-tuning every weight")
    for value in ("nan", "inf", "-1"):
        one_line_error(invoke(run_args(tiny, tmp_path / "c", "2k", "--train-epochs", value)), "--train-epochs")
    one_line_error(invoke(run_args(tiny, tmp_path / "d", "2k", "--seed", "-1")), "--seed must be an integer")
    one_line_error(invoke(run_args(tiny, tmp_path / "e", "2k", "--seed", str(2**32))), "--seed must be an integer")
    assert not any((tmp_path / x).exists() for x in "abcde")


def _laughs(path: Path, depth: int = 9) -> Path:
    defs = 'description:\n  - &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, depth + 1):
        defs += f"  - &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n"
    path.write_text(defs + "name: x\nversion: 1\nkinds:\n  lora:\n    roles: [q, v]\n    ranks: [0, 8]\n"
                    f"    alpha_ratio: *a{depth}\n")
    return path


def test_bad_numbers_under_a_memory_limit(tiny: dict[str, Path], searched_run: Path, tmp_path: Path) -> None:
    """Each case once needed 8 GB to 1.5 TB; under a 3 GB address-space limit each must answer exit 2, one line."""
    import resource
    import subprocess
    import sys

    limit = 3 * 2**30

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\nversion: 1\nkinds:\n  lora:\n    roles: [q, v]\n    ranks: [0, 8, 100000]\n")
    tampered = _tampered(searched_run, tmp_path, lambda d: d["allocation"]["lora"].update(
        {next(iter(d["allocation"]["lora"])): 10**9}))
    load = ("import sys\nfrom transformers import AutoModelForSequenceClassification\nfrom heterosearch import load_adapters\n"
            "from heterosearch.errors import UserError\n"
            "try:\n    load_adapters(AutoModelForSequenceClassification.from_pretrained(sys.argv[1]), sys.argv[2])\n"
            "except UserError as e:\n    print('error:', e, file=sys.stderr); sys.exit(2)\n")
    cases = [
        [sys.executable, "-m", "heterosearch", *run_args(tiny, tmp_path / "a", "100M", "--space", str(huge))],
        [sys.executable, "-m", "heterosearch", *run_args(tiny, tmp_path / "b", "1e12")],
        [sys.executable, "-m", "heterosearch", "validate", str(_laughs(tmp_path / "laughs.yaml"))],
        [sys.executable, "-c", load, str(tiny["model"]), str(tampered)],
    ]
    env = {**os.environ, "HETEROSEARCH_QUIET": "1", "HF_HUB_OFFLINE": "1"}
    for cmd in cases:
        res = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limited, timeout=120, env=env)
        errors = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
        assert res.returncode == 2 and len(errors) == 1 and "Traceback" not in res.stderr, (cmd[-3:], res.stderr[-800:])
        assert len(errors[0]) < 1000


def test_resume_and_overwrite_exclude_each_other(tiny: dict[str, Path], earlier_run: Path) -> None:
    before = snapshot(earlier_run)
    one_line_error(invoke(run_args(tiny, earlier_run, "2k", "--resume", "--overwrite")), "exclude each other")
    assert snapshot(earlier_run) == before


@pytest.mark.parametrize("under", ["/dev/null", "a-file"])
def test_unwritable_output_folder(tiny: dict[str, Path], tmp_path: Path, under: str) -> None:
    # chmod does not stop root: a path below a regular file cannot be created by anyone.
    parent = Path(under) if under.startswith("/") else tmp_path / under
    if not parent.exists():
        parent.write_text("not a folder")
    one_line_error(invoke(run_args(tiny, parent / "out")), "cannot write to output folder", "Not a directory")


def test_output_path_that_is_a_file(tiny: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    one_line_error(invoke(run_args(tiny, target)), "is not a folder")
    assert target.read_text() == "keep me"


# -- storage and workers --------------------------------------------------------------------------
def test_storage_that_cannot_be_opened(tiny: dict[str, Path], tmp_path: Path) -> None:
    line = one_line_error(invoke(run_args(tiny, tmp_path / "out", "2k", "--storage", "postgresql://hs:secret@127.0.0.1:1/hs")),
                          "cannot open study storage", "127.0.0.1:1")
    assert "secret" not in line
    one_line_error(invoke(run_args(tiny, tmp_path / "out", "2k", "--storage", str(tmp_path / "no" / "s.journal"))), "does not exist")
    assert not (tmp_path / "out").exists()


def test_worker_bad_inputs(tmp_path: Path) -> None:
    from heterosearch.optimize.study import prepare_study
    from tests.test_distributed import small_problem

    journal = tmp_path / "s.journal"
    one_line_error(invoke(["worker", "--storage", str(journal)]), "no study", "heterosearch run --storage")
    prepare_study(small_problem(), 3, 0, journal, study_name="mrpc-lora-2000-spectral-s0")
    one_line_error(invoke(["worker", "--storage", str(journal), "--study", "mrpc-lora-2000-spectral-s1"]),
                   "unknown study", "did you mean 'mrpc-lora-2000-spectral-s0'")
    one_line_error(invoke(["worker", "--storage", str(journal), "--trials", "0"]), "--trials")


# -- properties (hypothesis) ----------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.digits + "kKmMgGbBeE.+-_, " + "x\t", max_size=12))
def test_budget_parser_answers_every_string(text: str) -> None:
    """Any text parses to a positive whole number of parameters or is a one-line UserError."""
    try:
        n = parse_budget(text)
    except UserError as exc:
        assert "\n" not in str(exc) and "budget" in str(exc)
        return
    assert isinstance(n, int) and n >= 1


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10**7), st.sampled_from([("", 1), ("k", 1_000), ("K", 1_000), ("M", 1_000_000)]))
def test_budget_parser_reads_every_spelling_of_a_count(m: int, suffix: tuple[str, int]) -> None:
    letter, scale = suffix
    n = m * scale
    assert parse_budget(f"{m}{letter}") == n
    assert parse_budget(str(n)) == parse_budget(f"{n:,}") == parse_budget(f"{n:_}") == n
    assert parse_budget(f"{n:e}") == n if float(f"{n:e}") == n else True


YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70), st.floats(allow_nan=False, width=32),
                         st.text(alphabet=string.ascii_lowercase + "_", max_size=8))
YAML_VALUES = st.recursive(YAML_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(alphabet=string.ascii_lowercase + "_", max_size=8), inner, max_size=4)
), max_leaves=12)
VALID = {"name": "s", "version": 1, "kinds": {"lora": {"roles": ["q", "v"], "ranks": [0, 1, 2], "alpha_ratio": 2}},
         "baseline": {"roles": ["q", "v"]}}
PATHS = [("name",), ("version",), ("kinds",), ("kinds", "lora"), ("kinds", "lora", "roles"), ("kinds", "lora", "ranks"),
         ("kinds", "lora", "alpha_ratio"), ("baseline",), ("baseline", "roles"), ("description",)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(PATHS), YAML_VALUES)
def test_space_loader_answers_every_file(tmp_path: Path, path: tuple[str, ...], value: Any) -> None:
    """Any value at any field of a space file loads or is a one-line UserError naming the file."""
    import copy

    data = copy.deepcopy(VALID)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    f = tmp_path / "space.yaml"
    f.write_text(yaml.safe_dump(data))
    try:
        space = load_space(f)
    except UserError as exc:
        assert "\n" not in str(exc) and "space.yaml" in str(exc), str(exc)
        return
    assert space.lora.ranks and all(isinstance(r, int) and r >= 0 for r in space.lora.ranks)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_space_loader_answers_any_text(tmp_path: Path, text: str) -> None:
    """Any file content loads or is a UserError; `validate` shows it as one line with exit code 2."""
    f = tmp_path / "any.yaml"
    f.write_text(text, encoding="utf-8")
    try:
        load_space(f)
    except UserError:
        one_line_error(invoke(["validate", str(f)]), "any.yaml")

