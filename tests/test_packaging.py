"""The wheel works on its own: built from the checkout, installed in a fresh virtual environment,
run from a folder outside the repository (an editable install hides missing package data).

The fresh environment gets the wheel's code only; its third-party dependencies (torch,
transformers, ...) are borrowed from the test's own environment through a ``.pth`` line,
so the test needs no network and no second multi-GB install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.tiny_run import make_glue_dir, make_tiny_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import shutil

    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # a copy: building in the checkout would leave build/ and *.egg-info there
    shutil.copytree(REPO / "heterosearch", src / "heterosearch", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
                   check=True, capture_output=True, cwd=root)
    wheel = next(dist.glob("heterosearch-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    # Borrow the dependencies, but not heterosearch itself: a plain path entry processes no
    # .pth files, so the outer environment's editable heterosearch stays invisible.
    (site / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)  # what pip does for a pure-Python wheel, minus the script shim
    return {"root": root, "wheel": wheel, "python": venv / "bin" / "python"}


def _cli(env: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from heterosearch.cli import main; sys.argv = ['heterosearch', *sys.argv[1:]]; main()"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    clean.update({"HETEROSEARCH_QUIET": "1", "HF_HUB_OFFLINE": "1"})
    return subprocess.run([str(env["python"]), "-c", code, *args], capture_output=True, text=True, cwd=env["root"], env=clean)


def test_wheel_ships_the_spaces_and_the_packaged_data(wheel_env: dict[str, Path]) -> None:
    names = zipfile.ZipFile(wheel_env["wheel"]).namelist()
    for space in ("lora", "heterolora", "sharing", "full"):
        assert f"heterosearch/search_spaces/{space}.yaml" in names
    assert "heterosearch/tasks/data/mrpc/train.tsv" in names


def test_installed_wheel_lists_spaces_and_runs_outside_the_repository(wheel_env: dict[str, Path]) -> None:
    where = subprocess.run([str(wheel_env["python"]), "-c", "import heterosearch; print(heterosearch.__file__)"],
                           capture_output=True, text=True, cwd=wheel_env["root"], check=True).stdout
    assert str(REPO) not in where and "venv" in where  # the wheel's copy, not the checkout
    version = _cli(wheel_env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("heterosearch ")
    ls = _cli(wheel_env, "ls")
    assert ls.returncode == 0, ls.stderr
    for space in ("lora", "heterolora", "sharing", "full"):
        assert f"  {space} " in ls.stdout
    model = make_tiny_model(wheel_env["root"] / "model")
    data = make_glue_dir(wheel_env["root"] / "data", n_train=24, n_dev=8)
    run = _cli(wheel_env, "run", "--budget", "2k", "--model", str(model), "--data-dir", str(data), "--trials", "3",
               "--max-train-steps", "1", "--out", str(wheel_env["root"] / "run"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert (wheel_env["root"] / "run" / "results.json").is_file()
