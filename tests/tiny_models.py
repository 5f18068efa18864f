"""Tiny randomly initialised sequence-classification models, one per supported family.

Built from configs (no downloads) so unit tests cover every naming rule in milliseconds.
"""

from __future__ import annotations

from typing import Any

FAMILIES: tuple[str, ...] = ("bert", "roberta", "distilbert", "opt", "gpt2", "llama")

VOCAB = 100
INTERMEDIATE = 64


def tiny_config(family: str, num_layers: int = 2, hidden: int = 32, num_labels: int = 2) -> Any:
    """The transformers config of a tiny ``family`` model (vocab 100, 4 heads, FFN 64)."""
    import transformers as tf

    common: dict[str, Any] = {"vocab_size": VOCAB, "num_labels": num_labels}
    if num_labels == 1:
        common["problem_type"] = "regression"
    if family == "bert":
        return tf.BertConfig(
            hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=4,
            intermediate_size=INTERMEDIATE, max_position_embeddings=64, pad_token_id=0, **common,
        )
    if family == "roberta":
        return tf.RobertaConfig(
            hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=4,
            intermediate_size=INTERMEDIATE, max_position_embeddings=66,
            pad_token_id=1, bos_token_id=0, eos_token_id=2, **common,
        )
    if family == "distilbert":
        return tf.DistilBertConfig(
            dim=hidden, n_layers=num_layers, n_heads=4, hidden_dim=INTERMEDIATE,
            max_position_embeddings=64, pad_token_id=0, **common,
        )
    if family == "opt":
        return tf.OPTConfig(
            hidden_size=hidden, word_embed_proj_dim=hidden, num_hidden_layers=num_layers,
            num_attention_heads=4, ffn_dim=INTERMEDIATE, max_position_embeddings=64,
            pad_token_id=1, bos_token_id=2, eos_token_id=2, **common,
        )
    if family == "gpt2":
        return tf.GPT2Config(
            n_embd=hidden, n_layer=num_layers, n_head=4, n_inner=INTERMEDIATE, n_positions=64,
            bos_token_id=1, eos_token_id=1, pad_token_id=1, **common,
        )
    if family == "llama":
        # 2 key/value heads of 4: k/v project to hidden / 2, so d_out differs from d_in.
        return tf.LlamaConfig(
            hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=INTERMEDIATE, max_position_embeddings=64,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, **common,
        )
    raise ValueError(f"unknown tiny family {family!r} (known: {', '.join(FAMILIES)})")


def tiny_model(family: str, num_layers: int = 2, hidden: int = 32, num_labels: int = 2, seed: int = 0) -> Any:
    """A float32, eval-mode ``AutoModelForSequenceClassification`` of ``family``; same seed, same weights."""
    import torch
    from transformers import AutoModelForSequenceClassification

    config = tiny_config(family, num_layers=num_layers, hidden=hidden, num_labels=num_labels)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    return model.eval()


def tiny_batch(n: int = 4, seq: int = 10, num_labels: int = 2, seed: int = 0) -> dict[str, Any]:
    """A random labelled batch; ids start at 3 (0-2 are special tokens); row 0 is padded."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (n, seq), generator=g)
    mask = torch.ones(n, seq, dtype=torch.long)
    mask[0, -3:] = 0
    labels = torch.randint(0, num_labels, (n,), generator=g) if num_labels > 1 else torch.rand(n, generator=g)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
