"""A run folder: create, reopen and record a run, one writer at a time.

``Run`` is the run's inputs (``RunInputs``: space, model, sites, data, loaded on first use)
plus the folder they are recorded in: ``config.json`` and the files of each stage
(``pipeline/files.py``). Opening refuses to mix two different runs in one folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heterosearch import run_folder
from heterosearch.errors import UserError
from heterosearch.export.files import write_json
from heterosearch.export.schema import read_run_file
from heterosearch.pipeline.config import _DEFAULTS, RunConfig, versions
from heterosearch.pipeline.files import CONFIG_FILE
from heterosearch.pipeline.inputs import RunInputs


def stored_config(run_dir: Path, **overrides: Any) -> RunConfig:
    """The settings recorded in ``run_dir/config.json``, with ``overrides`` (those not None) replacing them."""
    stored = dict(read_run_file(run_dir / CONFIG_FILE, CONFIG_FILE)["config"])
    stored.update({k: v for k, v in overrides.items() if v is not None})
    stored["proxies"] = tuple(stored.get("proxies", ()))
    stored["out"] = str(run_dir)
    return RunConfig(**stored)


@dataclass
class Run(RunInputs):
    """A run folder plus the lazily loaded model, data and sites it needs."""

    out: Path
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def open(cls, cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> Run:
        """Create or reopen the run folder; refuse to mix two different runs in one folder."""
        out = Path(cfg.out) if cfg.out else cfg.default_out()
        cfg.out = str(out)
        if resume and overwrite:
            raise UserError("--resume and --overwrite exclude each other: --resume continues the run in --out, --overwrite replaces it")
        if out.exists() and not out.is_dir():
            raise UserError(f"output path {out} exists and is not a folder")
        ours = out.is_dir() and run_folder.is_ours(out)
        if ours:
            run_folder.lock(out)  # before anything is read, replaced or resumed: one writer per folder
        if ours and (out / CONFIG_FILE).is_file() and not overwrite:
            if not resume:
                raise UserError(f"output folder {out} holds an earlier run; pass --resume to continue it or --overwrite to replace it")
            old = read_run_file(out / CONFIG_FILE, CONFIG_FILE)["config"]
            diff = [k for k, v in cfg.to_dict().items() if k not in ("trials", "out") and old.get(k, _DEFAULTS.get(k)) != v]
            if diff:
                raise UserError(f"cannot resume {out}: it was made with other settings ({', '.join(diff)}); use --overwrite or another --out")
        elif out.is_dir() and any(out.iterdir()) and not ours:
            raise UserError(f"output folder {out} is not empty and is not a heterosearch run; nothing was changed: pick another --out")
        if ours and overwrite:
            foreign = run_folder.foreign_entries(out)
            if foreign:  # refuse before any work, and long before anything is deleted
                raise UserError(f"--overwrite refuses {out}: it holds files heterosearch did not write ({foreign[0]}"
                                f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); nothing was deleted: "
                                "move them away or pick another --out")
        run = cls(cfg=cfg, out=out)
        run.check_budget()  # bad input is answered before anything is created or replaced
        _ = run.data  # so are missing data and malformed rows
        if cfg.storage is not None:  # fail now, not after minutes of scoring
            from heterosearch.optimize.study import check_storage

            check_storage(cfg.storage)
        if ours and overwrite:
            run_folder.clear(out)
            if cfg.storage is not None:  # a shared storage outlives the folder: drop the old study too
                from heterosearch.optimize.study import default_study_name, delete_study

                delete_study(cfg.storage, default_study_name(out, cfg.storage))
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
        run_folder.mark(out)
        run_folder.lock(out)
        run.save_config()
        return run

    @classmethod
    def reopen(cls, run_dir: Path, **overrides: Any) -> Run:
        """A stage command on an existing run folder; ``overrides`` (not None) replace settings."""
        run_dir = Path(run_dir)
        if not (run_dir / CONFIG_FILE).is_file():
            raise UserError(f"{run_dir} is not a heterosearch run folder (no {CONFIG_FILE}); start one with `heterosearch score` or `run`")
        run = cls(cfg=stored_config(run_dir, **overrides), out=run_dir)
        run.check_budget()
        run_folder.lock(run_dir)
        return run  # the caller saves config.json once its stage has succeeded (a failed command changes nothing)

    def save_config(self) -> None:
        write_json(
            self.out / CONFIG_FILE,
            {"config": self.cfg.to_dict(), "space": self.space.to_dict(), "argv": sys.argv, "versions": versions(), "seed": self.cfg.seed},
        )

    def require_budget(self) -> int:
        if self.cfg.budget is None:
            raise UserError("this step needs a budget: pass --budget (e.g. 0.5M)")
        return self.cfg.budget

    def path(self, name: str) -> Path:
        return self.out / name
