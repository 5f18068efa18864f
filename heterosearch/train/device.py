"""Where and in which precision models train and evaluate: ``--device`` and ``--precision``.

- device ``auto`` is the first of CUDA, MPS, CPU that this torch can use; ``cuda:N`` is checked
  against the devices present, so a wrong index is one line, not a CUDA error deep in a step.
- precision ``fp32`` (the recipe's), ``bf16`` (autocast: matmuls in bfloat16, weights, optimizer
  state and losses in float32; CPUs with avx512_bf16/AMX and every recent GPU) or ``fp16``
  (autocast plus a gradient scaler; CUDA only, where float16 matmuls are fast: on CPU it would
  be slower than bf16 and has no scaler, so it is refused with the alternative).

The adapters' parameters stay float32 under autocast, so saved adapters and parameter counts
do not depend on the precision; only the speed and the rounding of the forward pass do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from heterosearch.errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES_HELP = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(spec: str) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` / ``mps`` -> a usable ``torch.device``, or one line."""
    if spec is not None and not isinstance(spec, str):  # a hand-edited config.json
        raise UserError(f"--device must be one of {DEVICES_HELP}, got {str(spec)[:40]!r}")
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {spec[:40]!r} is not a device ({DEVICES_HELP})") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {spec} asked for CUDA, but this torch sees no CUDA device (use --device cpu)")
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {spec}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})")
        return device
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError("--device mps asked for Apple's MPS, which this torch cannot use (use --device cpu)")
        return device
    raise UserError(f"--device {spec[:40]!r} is not supported ({DEVICES_HELP})")


def check_precision(precision: str, device: torch.device) -> None:
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise UserError(f"--precision {str(precision)[:20]!r} is unknown (known: {', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"--precision fp16 needs a CUDA device (here: {device.type}); use --precision bf16")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """The forward pass in ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def grad_scaler(device: torch.device, precision: str) -> Any:
    """A ``GradScaler`` for fp16 on CUDA (small gradients underflow in float16); None otherwise."""
    if precision == "fp16":
        return torch.amp.GradScaler(device.type)
    return None


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
