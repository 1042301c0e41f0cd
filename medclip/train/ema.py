"""The EMA teacher: an exponential moving average of the model, whose embeddings give losses soft targets.

Report-image pairs are noisy: a report mentions findings the scan does not show, and a batch holds other studies that
match a report nearly as well as its own. ALBEF (Li et al., NeurIPS 2021, "momentum distillation") and PC2-style
training learn in part from a slowly moving copy of the model instead of the one-hot pairing alone: the teacher's
similarities become soft targets (the ``distill`` loss), and its embeddings weight CWCL's targets (the ``cwcl`` loss
reads them automatically). The teacher is an average of recent students, so its targets are smoother than the
student's own and do not chase each noisy batch.

``train.ema: {decay: 0.995}`` turns it on. The teacher:

- starts as a copy of the model (after DistributedDataParallel has given every rank rank 0's weights) and, after each
  optimizer step, moves every trained parameter and every floating-point buffer by ``teacher += (1 - decay) *
  (model - teacher)``; frozen parameters are shared with the model, not copied (a LiT tower costs no memory twice);
- runs in eval mode under ``no_grad`` (no dropout: deterministic targets), and adds ``teacher_features`` (modality ->
  (B, D) unit embeddings) and ``frozen_features`` (the same, for ``cwcl``) to the model outputs;
- is saved with each checkpoint as ``ema.safetensors`` (its trained parameters and buffers) and restored on resume,
  so N steps + resume + N steps equals 2N straight steps. ``load_ema_weights`` puts it into a loaded model, for
  evaluating the teacher itself.

Not available with ``train.parallel: fsdp`` (the teacher would need its own sharding).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .. import __version__
from ..atomic import write_atomic
from ..checkpoint import CheckpointError, contiguous_copy
from ..config import ConfigError
from .config import EmaConfig

EMA_FILE = "ema.safetensors"
log = logging.getLogger("medclip.train")
_SHARED_ATTRIBUTES = ("preprocess", "card")  # a model's plain attributes the teacher shares instead of copying


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


class EmaTeacher:
    """An exponential moving average of ``model`` (see the module docstring).

    Args:
        model: the model being trained (wrapped in DistributedDataParallel is fine).
        decay: the EMA decay in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"train.ema.decay must be in (0, 1) for an EMA teacher, got {decay}")
        self.decay = decay
        student = _unwrap(model)
        # Frozen parameters (and the model's preprocessing / card) are shared, not copied: deepcopy returns the
        # object the memo already holds for an id.
        memo: dict[int, Any] = {id(p): p for p in student.parameters() if not p.requires_grad}
        for name in _SHARED_ATTRIBUTES:
            value = getattr(student, name, None)
            if value is not None:
                memo[id(value)] = value
        self.model = copy.deepcopy(student, memo)
        _recompile_like(student, self.model)
        self.model.eval()
        self.parameters, self.buffers = tracked_tensors(self.model, trained=trained_names(student))
        for parameter in self.parameters.values():
            parameter.requires_grad_(False)

    @classmethod
    def create(cls, model: nn.Module, config: EmaConfig, parallel: str = "ddp") -> EmaTeacher | None:
        """The teacher ``config`` asks for, or None when ``decay`` is 0."""
        if not config.enabled:
            return None
        if parallel == "fsdp":
            raise ConfigError("train.ema is not available with train.parallel: fsdp; use ddp or turn train.ema off")
        return cls(model, config.decay)

    # --- training -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights: ``teacher += (1 - decay) * (model - teacher)``."""
        student = _unwrap(model)
        current = dict(student.named_parameters())
        names = list(self.parameters)
        if names:
            # one fused kernel per device/dtype group instead of one per tensor (timm's ModelEmaV3 does the same)
            torch._foreach_lerp_(
                [self.parameters[n] for n in names], [current[n].detach() for n in names], 1 - self.decay
            )
        for name, buffer in student.named_buffers():
            teacher = self.buffers[name]
            if teacher.is_floating_point():
                teacher.lerp_(buffer, 1 - self.decay)
            else:  # counters (BatchNorm's num_batches_tracked) follow the model
                teacher.copy_(buffer)

    @torch.no_grad()
    def outputs(self, batch: Mapping[str, Any], chunk_size: int = 0) -> dict[str, Any]:
        """The teacher's embeddings of ``batch`` as extra model outputs: ``teacher_features`` and ``frozen_features``.

        Args:
            batch: the training batch (on the model's device).
            chunk_size: embed this many rows at a time (GradCache's chunks); 0 = the whole batch at once.
        """
        if chunk_size > 0:
            from .gradcache import batch_rows, merge_outputs, slice_batch

            rows = batch_rows(batch)
            bounds = [(start, min(start + chunk_size, rows)) for start in range(0, rows, chunk_size)]
            chunks = [self.model(slice_batch(dict(batch), start, stop, rows)) for start, stop in bounds]
            features = merge_outputs(chunks, [stop - start for start, stop in bounds])["features"]
        else:
            features = self.model(batch)["features"]
        return {"teacher_features": features, "frozen_features": features}

    # --- checkpoints ----------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Tensor]:
        """What a checkpoint keeps: the trained parameters and every buffer (frozen parameters are the model's)."""
        return contiguous_copy(_file_state(self.parameters, self.buffers))

    def writer(self, also: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
        """A ``write_extra`` for ``save_model`` writing ``ema.safetensors`` (after ``also``, e.g. the trainer state)."""

        def write(staging: Path) -> None:
            if also is not None:
                also(staging)
            state, metadata = self.state(), {"format": "pt", "medclip_version": __version__, "decay": str(self.decay)}
            write_atomic(staging / EMA_FILE, lambda temp: save_file(state, str(temp), metadata))

        return write

    def restore(self, path: str | Path) -> None:
        """Continue from a checkpoint's teacher (``ema.safetensors``); every tensor is checked before any is copied.

        Raises:
            CheckpointError: the checkpoint has no teacher, or its tensors do not fit this model's.
        """
        saved = read_ema_file(path)
        own = _file_state(self.parameters, self.buffers)
        _check_fits(saved, own, "the EMA teacher")
        with torch.no_grad():
            for key, tensor in own.items():
                tensor.copy_(saved[key])


def trained_names(model: nn.Module) -> set[str]:
    """Names of the parameters the optimizer trains (the ones the teacher averages)."""
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def tracked_tensors(model: nn.Module, trained: set[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(the ``trained`` parameters, every buffer) of ``model`` by name: the tensors an EMA teacher keeps its own of."""
    parameters = {name: parameter for name, parameter in model.named_parameters() if name in trained}
    return parameters, dict(model.named_buffers())


def _file_state(parameters: Mapping[str, Tensor], buffers: Mapping[str, Tensor]) -> dict[str, Tensor]:
    state = {f"parameters.{name}": value for name, value in parameters.items()}
    state.update({f"buffers.{name}": value for name, value in buffers.items()})
    return state


def _recompile_like(student: nn.Module, teacher: nn.Module) -> None:
    """A compiled module's copy would call the original's compiled forward: compile the teacher's own instead."""
    for (_, original), (_, copied) in zip(student.named_modules(), teacher.named_modules(), strict=True):
        if getattr(original, "_compiled_call_impl", None) is not None:
            copied._compiled_call_impl = None
            copied.compile()


def _check_fits(saved: Mapping[str, Tensor], expected: Mapping[str, Tensor], what: str) -> None:
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    wrong_shape = sorted(key for key in set(saved) & set(expected) if saved[key].shape != expected[key].shape)
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{EMA_FILE} does not fit {what}: {len(missing)} missing tensors (first: {missing[:3]}), "
            f"{len(unexpected)} unexpected (first: {unexpected[:3]}), {len(wrong_shape)} of another shape "
            f"(first: {wrong_shape[:3]}); was it saved with other modality or freeze/lora options?"
        )


def read_ema_file(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint's ``ema.safetensors``.

    Raises:
        CheckpointError: no teacher in the checkpoint, or an unreadable file.
    """
    file = Path(path) / EMA_FILE
    if not file.is_file():
        raise CheckpointError(
            f"the checkpoint has no {EMA_FILE}: it was trained without train.ema, so a run with train.ema cannot "
            "resume it exactly; start a new run from its weights, or resume with train.ema.decay=0"
        )
    try:
        return load_file(str(file))
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{EMA_FILE} is not a readable safetensors file ({type(error).__name__})") from None


def load_ema_weights(path: str | Path, model: nn.Module) -> nn.Module:
    """Replace a loaded model's trained weights by the checkpoint's EMA teacher's (to evaluate the teacher).

    Args:
        path: a checkpoint directory saved with ``train.ema``.
        model: that checkpoint's model (``medclip.load_model(path)``, which rebuilds the same frozen / LoRA layout);
            changed in place and returned.

    Raises:
        CheckpointError: no teacher in the checkpoint, or tensors that do not fit the model (nothing is copied then).
    """
    saved = read_ema_file(path)
    target = _unwrap(model)
    parameters, buffers = tracked_tensors(target, trained=trained_names(target))
    own = _file_state(parameters, buffers)
    _check_fits(saved, own, "this model")
    with torch.no_grad():
        for key, tensor in own.items():
            tensor.copy_(saved[key])
    return model


def restore_teacher(teacher: EmaTeacher | None, path: str | Path) -> None:
    """On resume: restore ``teacher`` from the checkpoint; without one, say that the checkpoint's teacher is dropped."""
    if teacher is not None:
        teacher.restore(path)
    elif (Path(path) / EMA_FILE).is_file():
        log.warning(
            "the checkpoint has an EMA teacher (%s) but train.ema is off: training continues without it, and the next "
            "checkpoint has none",
            EMA_FILE,
        )


def losses_needing_teacher(criterion: nn.Module) -> list[str]:
    """Names of the configured losses that read ``teacher_features`` (they declare ``needs_teacher = True``)."""
    losses: Iterable[tuple[str, nn.Module]] = getattr(criterion, "losses", nn.ModuleDict()).items()
    return [name for name, loss in losses if getattr(loss, "needs_teacher", False)]


def check_teacher(criterion: nn.Module, teacher: EmaTeacher | None) -> None:
    """Refuse a loss that needs the EMA teacher when ``train.ema`` is off (before any step runs).

    Raises:
        ConfigError: naming the losses and the setting to change.
    """
    needing = losses_needing_teacher(criterion)
    if needing and teacher is None:
        raise ConfigError(
            f"loss {', '.join(needing)} needs the EMA teacher's embeddings: set train.ema.decay (e.g. 0.995)"
        )
