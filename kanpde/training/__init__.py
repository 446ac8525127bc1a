"""Training: a short loop (:class:`Trainer`) and one callback per technique (:mod:`kanpde.training.callbacks`),
configured by one typed schema (:class:`TrainerConfig`)."""
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import TrainerConfig
from kanpde.training.state import TrainResult, TrainState
from kanpde.training.trainer import Trainer

__all__ = ["Callback", "TrainResult", "TrainState", "Trainer", "TrainerConfig"]
