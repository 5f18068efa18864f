"""Tokenise a split once and cut it into padded batches.

Training uses length-grouped batches (transformers' ``LengthGroupedSampler``: mega-batches
of 50 batches sorted by length), so little compute is spent on padding; evaluation sorts
by length outright. Both are seeded, so two runs with the same seed see the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100  # the label torch's cross-entropy skips (a causal LM's prompt tokens, padding)


@dataclass
class Encoded:
    """A tokenised split: one feature dict per example (no padding yet)."""

    features: list[dict[str, list[int]]]
    labels: list[int] | list[float] | None
    regression: bool
    lm: bool = False  # causal LM (tasks/lm.py): per-token labels live in each feature dict

    def __len__(self) -> int:
        return len(self.features)

    @property
    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.features]

    def num_tokens(self, indices: Sequence[int]) -> int:
        return sum(len(self.features[i]["input_ids"]) for i in indices)


def encode(tokenizer: Any, texts: Sequence[tuple[str, ...]], labels: Any, regression: bool, max_length: int) -> Encoded:
    """Tokenise sentence pairs (or single sentences) with truncation to ``max_length``."""
    if not texts:
        return Encoded([], labels, regression)
    columns = list(zip(*texts))
    first = list(columns[0])
    second = list(columns[1]) if len(columns) > 1 else None
    out = tokenizer(first, second, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in out]
    features = [{k: out[k][i] for k in keys} for i in range(len(first))]
    return Encoded(features, None if labels is None else list(labels), regression)


def collate(tokenizer: Any, enc: Encoded, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """Pad one batch to its longest example; add ``labels`` when the split has them."""
    if enc.lm:
        return collate_lm(tokenizer, [enc.features[i] for i in indices])
    batch = tokenizer.pad([enc.features[i] for i in indices], return_tensors="pt")
    batch = {k: v for k, v in batch.items()}
    if enc.labels is not None:
        values = [enc.labels[i] for i in indices]
        batch["labels"] = torch.tensor(values, dtype=torch.float32 if enc.regression else torch.long)
    return batch


def train_batches(enc: Encoded, batch_size: int, seed: int, epoch: int = 0, grouped: bool = True) -> list[list[int]]:
    """Index lists for one training epoch: length-grouped (default) or plain random."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if grouped:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        order = list(LengthGroupedSampler(batch_size, lengths=enc.lengths, generator=generator))
    else:
        order = torch.randperm(len(enc), generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def eval_batches(enc: Encoded, batch_size: int) -> list[list[int]]:
    """Deterministic batches sorted by length (order does not matter for metrics)."""
    order = sorted(range(len(enc)), key=lambda i: len(enc.features[i]["input_ids"]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def iter_collated(tokenizer: Any, enc: Encoded, batches: Sequence[Sequence[int]]) -> Iterator[dict[str, torch.Tensor]]:
    for idx in batches:
        yield collate(tokenizer, enc, idx)


def collate_lm(tokenizer: Any, features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
    """Right-pad ids with the pad token (eos when the tokenizer has none), mask 0, labels -100."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    def fill(key: str, value: int) -> Any:
        return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features], dtype=torch.long)

    return {"input_ids": fill("input_ids", pad), "attention_mask": fill("attention_mask", 0), "labels": fill("labels", IGNORE)}
