"""Short training of an allocation: the run's ``train`` stage and every evidence command train through it."""

from heterosearch.train.config import TrainConfig
from heterosearch.train.loop import TrainResult, evaluate, train_allocation

__all__ = ["TrainConfig", "TrainResult", "evaluate", "train_allocation"]
