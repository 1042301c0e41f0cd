"""Keeping long runs alive and their work safe: non-finite steps, pre-emption, interrupted checkpoint writes.

- ``NonFiniteGuard``: a step whose loss or gradient norm is NaN/inf is skipped (no optimizer update) and counted;
  after ``max_consecutive`` such steps in a row training stops with a clear message instead of burning GPU hours.
- ``PreemptionFlag``: SIGTERM (what SLURM and Kubernetes send before killing a job) sets a flag; the trainer writes
  a checkpoint at the end of the current step and stops, so ``train.resume=auto`` continues where it was.
- ``recover_checkpoint_dir``: after a SIGKILL during a checkpoint swap, put the newest complete checkpoint back in
  place and remove stale temporary files.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import MedclipError


class NonFiniteLossError(MedclipError, RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient: the run is diverging."""


class NonFiniteGuard:
    """Decides whether a step's update may be applied; every process takes the same decision.

    Args:
        max_consecutive: consecutive non-finite steps tolerated before stopping (0 = stop at the first).
        distributed: whether to agree across processes (one rank's NaN must skip the step everywhere).
    """

    def __init__(self, max_consecutive: int, distributed: bool = False) -> None:
        self.max_consecutive = max_consecutive
        self.distributed = distributed
        self.skipped = 0
        self.consecutive = 0

    def step_is_finite(self, loss: float, grad_norm: float | None = None) -> bool:
        finite = math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm))
        if self.distributed and dist.is_initialized():
            flag = torch.tensor([0.0 if finite else 1.0])
            if dist.get_backend() == "nccl":
                flag = flag.cuda()
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            finite = bool(flag.item() == 0.0)
        if finite:
            self.consecutive = 0
            return True
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive > self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive training steps had a non-finite loss or gradient "
                f"({self.skipped} skipped in total); stopping. Lower train.lr, check the inputs for NaN, or use "
                "train.precision=fp32. The last checkpoint holds the last finite weights."
            )
        return False


class PreemptionFlag:
    """Turns SIGTERM into a request to checkpoint and stop at the end of the current step.

    Installed only from the main thread (signal handlers cannot be set elsewhere); the previous handler is restored
    by ``close``.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def agreed(self, distributed: bool) -> bool:
        """Whether any process was asked to stop (all processes must stop at the same step)."""
        if not distributed or not dist.is_initialized():
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0])
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def recover_checkpoint_dir(target: str | Path) -> Path | None:
    """Repair what a kill during ``save_checkpoint`` can leave behind; return the complete checkpoint, if any.

    ``replace_directory`` renames the old checkpoint to ``.NAME.old`` before moving the new one in: a kill between
    the two renames leaves only ``.NAME.old``, which is complete and is moved back. Staging folders and temporary
    files of interrupted writes are deleted.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return None
    retired = parent / f".{target.name}.old"
    if not target.exists() and retired.is_dir():
        retired.rename(target)
    elif retired.exists():
        shutil.rmtree(retired)
    for stale in parent.glob(f".{target.name}.*.staging"):
        shutil.rmtree(stale, ignore_errors=True)
    return target if target.is_dir() else None


def resolve_resume(resume: str, out: str | Path) -> Path | None:
    """The checkpoint to continue from: ``resume`` as given, or with "auto" the run's own latest one in ``out``.

    "auto" is what job scripts that may be pre-empted or killed use: the first run starts fresh, every restart
    continues from the newest complete checkpoint (repairing an interrupted checkpoint swap first).
    """
    from .state import TRAINER_STATE_FILE

    if resume != "auto":
        return Path(resume) if resume else None
    found = recover_checkpoint_dir(Path(out) / "checkpoint")
    if found is not None and (found / TRAINER_STATE_FILE).is_file():
        logging.getLogger("medclip.train").info("train.resume=auto: continuing from the run's own checkpoint")
        return found
    return None
