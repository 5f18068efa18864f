"""Search an allocation with the Python API, then train it with plain PEFT + the Hugging Face Trainer.

    python examples/search_then_train.py [--model NAME_OR_PATH] [--budget 83k] [--max-steps 300]

Defaults: the packaged all-MiniLM-L6-v2 and the MRPC copy shipped with heterosearch, offline.
heterosearch only chooses the ranks (``heterosearch.search``, no training); everything after
``result.lora_config()`` is ordinary PEFT code.
"""

from __future__ import annotations

import argparse

import numpy as np
from datasets import Dataset
from peft import get_peft_model
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

import heterosearch
from heterosearch.models import load_model
from heterosearch.tasks import load_task_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="Hugging Face name or path (default: the packaged MiniLM)")
    ap.add_argument("--budget", default="83k")
    ap.add_argument("--max-steps", type=int, default=300)
    args = ap.parse_args()

    model, tokenizer = load_model(args.model, 2, 0)
    mrpc = load_task_data("mrpc")

    def dataset(split) -> Dataset:
        a, b = zip(*split.texts)
        enc = tokenizer(list(a), list(b), truncation=True, max_length=128)
        return Dataset.from_dict({**enc, "label": list(split.labels)})

    train, test = dataset(mrpc.train), dataset(mrpc.dev)
    result = heterosearch.search(model, train, budget=args.budget, tokenizer=tokenizer)
    print(f"{result.params:,} adapter parameters on {len(result.allocation.lora)} sites")

    peft_model = get_peft_model(model, result.lora_config())
    targs = TrainingArguments("search-then-train", max_steps=args.max_steps, learning_rate=1e-3, warmup_ratio=0.06,
                              per_device_train_batch_size=32, report_to=[], save_strategy="no")
    trainer = Trainer(peft_model, targs, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=lambda p: {"accuracy": float((np.argmax(p[0], -1) == p[1]).mean())})
    trainer.train()
    print(trainer.evaluate(test))  # GLUE dev: the report split


if __name__ == "__main__":
    main()
