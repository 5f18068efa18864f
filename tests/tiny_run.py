"""A tiny saved BERT (model + tokenizer) and a tiny GLUE folder, so CLI runs finish in seconds.

Used by the resume, bad-input and distributed tests: ``heterosearch run --model DIR
--data-dir DIR`` on these loads, scores, searches and trains on a 2-core CPU in a few seconds.
"""

from __future__ import annotations

import random
from pathlib import Path

WORDS = [
    "the", "a", "cat", "dog", "sat", "ran", "on", "mat", "park", "big", "small", "red", "blue",
    "said", "that", "it", "was", "is", "and", "of", "to", "in", "he", "she", "they", "we", "not",
    "very", "good", "bad", "day", "night", "house", "car", "tree", "bird", "fish", "sun", "rain",
    "walked", "slept", "ate", "saw", "liked", "home", "city", "road", "old", "new", "fast",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_model(folder: Path, num_layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """Save a random tiny BERT classifier and a word-level BertTokenizerFast into ``folder``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + WORDS + [".", ","]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=4,
        intermediate_size=2 * hidden, max_position_embeddings=64, pad_token_id=0, num_labels=2,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=64)
    tok.save_pretrained(folder)
    return folder


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) + " ."


def make_glue_dir(root: Path, n_train: int = 64, n_dev: int = 32, seed: int = 0) -> Path:
    """``root/MRPC/{train,dev}.tsv`` in GLUE's MRPC layout with random sentence pairs."""
    rng = random.Random(seed)
    folder = Path(root) / "MRPC"
    folder.mkdir(parents=True, exist_ok=True)
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = [f"{rng.randint(0, 1)}\t{i}\t{i + 1000}\t{_sentence(rng)}\t{_sentence(rng)}\n" for i in range(n)]
        (folder / name).write_text(header + "".join(rows), encoding="utf-8")
    return Path(root)
