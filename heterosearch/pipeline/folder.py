"""A run folder: create, reopen and record a run, one writer at a time.

``Run`` is the run's inputs (``RunInputs``: space, model, sites, data, loaded on first use)
plus the folder they are recorded in: ``config.json`` and the files of each stage
(``pipeline/files.py``). Opening refuses to mix two different runs in one folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
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
    stored = {**_DEFAULTS, **read_run_file(run_dir / CONFIG_FILE, CONFIG_FILE)["config"]}  # an older folder keeps its recipe
    stored.update({k: v for k, v in overrides.items() if v is not None})
    stored["proxies"] = tuple(stored.get("proxies", ()))
    stored["out"] = str(run_dir)
    return RunConfig(**stored)


def _same_rate(cfg: RunConfig, other_scaling: str) -> bool:
    """Whether ``cfg`` trains at the same rate under ``other_scaling`` (``recipe.lr_factor`` on this model's sites)."""
    from heterosearch import recipe

    unit = RunInputs(cfg=cfg).rank_one_params  # site shapes from the model's config, no weights
    return recipe.lr_factor(cfg.budget, unit, other_scaling) == recipe.lr_factor(cfg.budget, unit, cfg.lr_scaling)


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
        resumed_data = None  # the data record of the run being resumed
        if ours:
            run_folder.lock(out)  # before anything is read, replaced or resumed: one writer per folder
        if ours and (out / CONFIG_FILE).is_file() and not overwrite:
            if not resume:
                raise UserError(f"output folder {out} holds an earlier run; pass --resume to continue it or --overwrite to replace it")
            old = read_run_file(out / CONFIG_FILE, CONFIG_FILE)["config"]
            diff = [k for k, v in cfg.to_dict().items() if k not in ("trials", "out") and old.get(k, _DEFAULTS.get(k)) != v]
            if "lr_scaling" in diff and _same_rate(cfg, old.get("lr_scaling", _DEFAULTS["lr_scaling"])):
                diff.remove("lr_scaling")  # e.g. a folder from before the rule, at a budget where it changes nothing
            if diff:
                raise UserError(f"cannot resume {out}: it was made with other settings ({', '.join(diff)}); use --overwrite or another --out")
            resumed_data = read_run_file(out / CONFIG_FILE, CONFIG_FILE).get("data")
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
        if ours and resume and not overwrite and (out / CONFIG_FILE).is_file():
            _check_same_data(out, resumed_data, run.data_record)
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
            {"config": self.cfg.to_dict(), "space": self.space.to_dict(), "argv": sys.argv, "versions": versions(), "seed": self.cfg.seed,
             **self.provenance()},
        )

    def check_same_data(self) -> None:
        """Refuse to go on with data whose files changed since config.json recorded them (train, verify)."""
        if (self.out / CONFIG_FILE).is_file():
            _check_same_data(self.out, read_run_file(self.out / CONFIG_FILE, CONFIG_FILE).get("data"), self.data_record)

    @cached_property
    def model_record(self) -> dict[str, Any]:
        from heterosearch.pipeline.provenance import model_record

        return model_record(self.cfg.model, self.model_path)  # once per process: a local folder is hashed file by file

    @cached_property
    def data_record(self) -> dict[str, Any]:
        from heterosearch.pipeline.provenance import data_record

        return data_record(self.data)

    def provenance(self) -> dict[str, Any]:
        """``{"data": ..., "model": ...}`` (pipeline/provenance.py) of what this process used.

        A stage that loaded no data or model (search, export) keeps the record of the stage that
        did; anything not recorded yet is computed now.
        """
        stored: dict[str, Any] = {}
        if (self.out / CONFIG_FILE).is_file():
            doc = read_run_file(self.out / CONFIG_FILE, CONFIG_FILE)
            same = all(doc["config"].get(k) == getattr(self.cfg, k) for k in ("task", "data_dir", "model"))
            stored = {k: doc[k] for k in ("data", "model") if same and isinstance(doc.get(k), dict)}
        data = self.data_record if "data" in self.__dict__ or "data" not in stored else stored["data"]
        loaded = "tokenizer" in self.__dict__  # every model load in a run goes with the tokenizer
        model = self.model_record if loaded or "model" not in stored else stored["model"]
        return {"data": data, "model": model}

    def require_budget(self) -> int:
        if self.cfg.budget is None:
            raise UserError("this step needs a budget: pass --budget (e.g. 0.5M)")
        return self.cfg.budget

    def path(self, name: str) -> Path:
        return self.out / name


def _check_same_data(out: Path, recorded: Any, now: dict[str, Any]) -> None:
    """A resumed or retrained run must use the data it was scored on: refuse if a data file changed since."""
    from heterosearch.pipeline.provenance import data_digests

    before, after = data_digests(recorded), data_digests(now)
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    if changed:
        raise UserError(f"{out} was made from other {changed[0]} data (the sha256 of its file differs now): restore the data, "
                        "or start a new run with --overwrite or another --out")
