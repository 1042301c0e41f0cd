"""Training: the loop, its settings, resumable state, optimiser/schedule, distributed set-up and resilience.

Model building and checkpoints are the core's (``medclip.factory``, ``medclip.checkpoint``); recipes compose them
with the ``Trainer`` (``recipes/pretrain.py`` is the contrastive one).
"""

from .config import TrainConfig
from .trainer import Trainer

__all__ = ["TrainConfig", "Trainer"]
