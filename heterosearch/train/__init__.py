"""Short verification training of an allocation."""

from heterosearch.train.loop import TrainConfig, TrainResult, evaluate, train_allocation

__all__ = ["TrainConfig", "TrainResult", "evaluate", "train_allocation"]
