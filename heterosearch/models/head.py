"""Where a fresh regression head starts: its output bias at the mean training label.

``load_model`` gives a regression task (one output, MSE loss) a new head whose output starts
near 0. STS-B's labels lie in [0, 5] with mean 2.7 and variance 2.3, so the first loss is
about 9.6, and almost all of it is the offset: every example's gradient points the same way
("output more"), through the head and, via the adapters, into the sentence representation.
Measured on MiniLM at 41.5k (``reports/recipe-sweep/stsb-41.5k``, seed 0, lr 1e-3, 3 epochs):
uniform LoRA on q,v ends at validation Pearson 0.19 with the head starting at 0 (the loss
settles at the label variance: the model predicts the mean), and at 0.82 when the head's bias
starts at the mean training label. Higher rates do not help (lr 3e-3: 0.17; lr 1e-2: -0.03,
and 0.05 on all sites): the offset is the problem, not the step size.

So regression heads start at the mean of the **training** labels (never val or test): the
first gradients carry only the part of the loss a representation can explain. The same rule
holds for every method of a run (winner, baselines, AdaLoRA, the proxies' scoring pass), so
no method is favoured. Classification heads and language-model heads are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def regression_output(model: Any) -> Any | None:
    """The head's output layer of a one-output model: the last ``nn.Linear`` with one output feature.

    A transformer body has no 1-wide linear layer, so in module order the last one is the
    head's output (BERT/DeBERTa ``classifier``, RoBERTa ``classifier.out_proj``, Llama ``score``).
    """
    from torch import nn

    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features == 1:
            last = module
    return last


def start_at_label_mean(model: Any, labels: Sequence[float]) -> float | None:
    """Set the regression head's output bias to the mean of ``labels`` (the training split's).

    Returns the mean, or None when nothing was changed: no labels, not a one-output model, or
    a head without a bias (Llama's ``score``; it then starts at 0 as before).
    """
    import torch

    if not labels or getattr(getattr(model, "config", None), "num_labels", None) != 1:
        return None
    out = regression_output(model)
    if out is None or out.bias is None:
        return None
    mean = float(sum(float(x) for x in labels) / len(labels))
    with torch.no_grad():
        out.bias.fill_(mean)
    return mean
