"""Training: the configuration, the trainer that runs a model's objective, and the run it leaves."""

from imgtrans.train.objective import StepContext, TrainableModel
from imgtrans.train.run import RunSummary
from imgtrans.train.settings import TrainConfig
from imgtrans.train.trainer import NonFiniteLossError, Trainer

__all__ = ["NonFiniteLossError", "RunSummary", "StepContext", "TrainConfig", "TrainableModel", "Trainer"]
