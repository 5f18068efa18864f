"""Shared test fixtures: torch thread pinning and tiny random models for the contract suite.

Nothing here is autouse: a fixture defined in this file would otherwise apply to every test
module, and the modules that do not ask for one thread must keep running as they do today.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from hypothesis import settings

# CI judges a commit, so its property tests draw the same examples every time (HYPOTHESIS_PROFILE=ci,
# set by .ci/run); a developer's run keeps drawing new ones, which is how a bad case is found.
settings.register_profile("ci", derandomize=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

from tests.tiny_models import tiny_batch, tiny_model


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` torch intra-op threads, restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for one test: on a shared 2-core machine more threads only contend."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_module() -> Iterator[None]:
    """One torch thread for a whole module of tiny-model tests (tiny matmuls: one thread beats two).

    Use it as ``pytestmark = pytest.mark.usefixtures("one_thread_module")``: set up before the
    module's first test, restored after its last, as a module-scoped autouse fixture would be.
    """
    with torch_threads(1):
        yield


@pytest.fixture
def tiny_bert() -> Callable[..., Any]:
    """Factory of tiny random BERT classifiers (hidden 32, 2 layers, 4 heads, FFN 64, vocab 100).

    Built from a config, no download; the same ``seed`` gives the same weights, so a "fresh"
    base model for reloading adapters is ``tiny_bert()`` again.
    """

    def make(seed: int = 0, num_layers: int = 2) -> Any:
        return tiny_model("bert", num_layers=num_layers, seed=seed)

    return make


@pytest.fixture
def tiny_batches() -> list[dict[str, torch.Tensor]]:
    """Two small labelled batches (4 x 10 tokens, row 0 padded) for scoring and training steps."""
    return [tiny_batch(seed=i) for i in range(2)]
