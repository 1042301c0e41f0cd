"""Training: the loop, checkpoints, optimiser/schedule, distributed set-up, and ``pretrain`` end to end."""

from .checkpoint import CheckpointError, load_model, save_checkpoint
from .pretrain import PretrainResult, pretrain

__all__ = ["CheckpointError", "PretrainResult", "load_model", "pretrain", "save_checkpoint"]
