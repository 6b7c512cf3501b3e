"""Training pix2pix: the configuration, the trainer, and its checkpoints."""

from imgtrans.train.settings import TrainConfig
from imgtrans.train.trainer import NonFiniteLossError, RunSummary, Trainer

__all__ = ["NonFiniteLossError", "RunSummary", "TrainConfig", "Trainer"]
