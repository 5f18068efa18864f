"""Causal language modelling on a user's file (``--task lm:FILE``) for decoder models.

Rows have a ``text`` field (the loss is on every token) or ``prompt`` and ``response`` fields
(the loss is on the response tokens only: the usual instruction-tuning objective). An example
is ``prompt ids + response ids + eos``; its labels are -100 (ignored by the cross-entropy) on
the prompt and on padding, the token ids elsewhere; the model shifts them by one itself.
Reported: mean loss per response token and its exponential, the perplexity; lower is better.
No labels, so splits are carved unstratified (``tasks/splits.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heterosearch.errors import UserError
from heterosearch.tasks._loading import Split, TaskData
from heterosearch.tasks._spec import TaskSpec
from heterosearch.tasks.tables import Table

PREFIX = "lm:"


def lm_spec(name: str, source: str, columns: tuple[str, ...]) -> TaskSpec:
    return TaskSpec(
        name=name, glue_dir=source, text_columns=columns, label_column="", label_map=None, num_labels=0,
        metrics=("loss", "perplexity"), main_metric="loss", hub_name=("", ""), hub_text_columns=columns,
        test_has_labels=True, kind="lm", higher_is_better=False,
    )


def build_lm_task(tables: dict[str, Table], name: str, source: str) -> TaskData:
    """``tables`` (``train`` and optionally ``val``, ``report``) -> the LM task's spec and splits."""
    train = tables["train"]
    if {"prompt", "response"} <= set(train.columns):
        columns: tuple[str, ...] = ("prompt", "response")
    elif "text" in train.columns:
        columns = ("text",)
    else:
        raise UserError(f"{train.source}: missing column 'text' (or 'prompt' and 'response') "
                        f"(columns: {', '.join(train.columns)})"[:300])

    def split(role: str) -> Split:
        table = tables[role]
        texts = []
        for i, row in enumerate(table.rows):
            values = []
            for c in columns:
                if c not in row:
                    raise UserError(f"{table.where(i)}: missing column {c!r}")
                if not isinstance(row[c], str):
                    raise UserError(f"{table.where(i)}: column {c!r} holds {type(row[c]).__name__}, not text")
                values.append(row[c])
            if not values[-1].strip():  # no tokens to learn from: the loss would be undefined
                raise UserError(f"{table.where(i)}: empty {columns[-1]!r}")
            texts.append(tuple(values))
        return Split(texts=texts, labels=None, source=table.source)

    return TaskData(spec=lm_spec(name, source, columns), train=split("train"),
                    dev=split("report") if "report" in tables else None, test=None, source=source,
                    val=split("val") if "val" in tables else None)


def encode_lm(tokenizer: Any, texts: Sequence[tuple[str, ...]], max_length: int) -> Any:
    """Token ids and labels per example, truncated to ``max_length`` tokens.

    Too long: the response keeps at least half of ``max_length`` and the prompt loses its start
    (its end is the context the response follows).
    """
    from heterosearch.tasks.batching import IGNORE, Encoded

    if not texts:
        return Encoded([], None, False, lm=True)
    pairs = len(texts[0]) == 2
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if pairs:
        prompts = tokenizer([t[0] for t in texts], add_special_tokens=True)["input_ids"]
        responses = tokenizer([t[1] for t in texts], add_special_tokens=False)["input_ids"]
    else:
        responses = tokenizer([t[0] for t in texts], add_special_tokens=True)["input_ids"]
        prompts = [[] for _ in texts]
    features = []
    for prompt, response in zip(prompts, responses):
        response = list(response) + eos
        response = response[: max(max_length - len(prompt), (max_length + 1) // 2)]
        room = max_length - len(response)
        prompt = list(prompt)[-room:] if room > 0 else []
        ids = prompt + response
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                         "labels": [IGNORE] * len(prompt) + response})
    return Encoded(features, None, False, lm=True)
