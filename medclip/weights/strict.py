"""Strict key checking: weights fit a module exactly, or nothing is loaded and the error names every key that did not.

``load_state_dict(strict=False)`` is how warm starts go silently wrong: a file whose keys are named differently loads
nothing and training starts from random weights with no sign of it (open_clip's RN50 into a timm ResNet: 265 missing,
489 unexpected). Every warm start in medclip checks the whole mapping first (missing, unexpected, shape-mismatched
and non-finite tensors) and only then assigns, so a refused file never leaves an encoder half-loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError

SHOWN_KEYS = 8  # keys listed per kind of problem; the rest are counted


class WeightsError(CheckpointError):
    """Weights that do not fit the module they are meant for (the message names the keys), or a file medclip refuses
    to read (pickle-based, missing, unreadable)."""


@dataclass
class KeyCheck:
    """The difference between what a module expects and what a file holds.

    Attributes:
        missing: keys the module has and the file lacks.
        unexpected: keys the file has and the module lacks.
        mismatched: (key, file shape, module shape) for tensors present on both sides with different shapes.
        non_finite: keys whose tensors hold NaN or infinity.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    non_finite: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.non_finite)

    def describe(self) -> str:
        """One line per kind of problem, each naming its first keys (``SHOWN_KEYS``) and counting the rest."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_names(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_names(self.unexpected)})")
        if self.mismatched:
            shown = [f"{key}: file {list(found)} vs encoder {list(wanted)}" for key, found, wanted in self.mismatched]
            parts.append(f"{len(self.mismatched)} of another shape ({_names(shown)})")
        if self.non_finite:
            parts.append(f"{len(self.non_finite)} with NaN or infinity ({_names(self.non_finite)})")
        return "; ".join(parts) or "all tensors fit"


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN_KEYS])
    return shown + (f", ... and {len(items) - SHOWN_KEYS} more" if len(items) > SHOWN_KEYS else "")


def check_tensors(expected: Mapping[str, Tensor], found: Mapping[str, Tensor]) -> KeyCheck:
    """Compare a module's state dict (or the part of it in scope) with the tensors of a file, key by key."""
    check = KeyCheck(
        missing=sorted(set(expected) - set(found)),
        unexpected=sorted(set(found) - set(expected)),
    )
    for key in sorted(set(expected) & set(found)):
        wanted, tensor = tuple(expected[key].shape), tuple(found[key].shape)
        if wanted != tensor:
            check.mismatched.append((key, tensor, wanted))
        elif found[key].is_floating_point() and not torch.isfinite(found[key]).all():
            check.non_finite.append(key)
    return check


def in_scope(key: str, scope: str) -> bool:
    """Whether a state-dict key lies inside the sub-module ``scope`` ("" = the whole module)."""
    return not scope or key.startswith(f"{scope}.")


def scoped_state(module: nn.Module, scope: str) -> dict[str, Tensor]:
    """The part of ``module``'s state dict inside ``scope`` (full keys, as the module names them)."""
    return {key: value for key, value in module.state_dict().items() if in_scope(key, scope)}


def assign(module: nn.Module, tensors: Mapping[str, Tensor]) -> None:
    """Copy already checked tensors into ``module`` (keys as in its state dict; values cast to its dtypes).

    Only call after ``check_tensors`` found no problem: every key then exists with its shape, so nothing can fail
    half-way. ``strict=False`` because a scoped file covers part of the module.
    """
    result = module.load_state_dict(dict(tensors), strict=False)
    if result.unexpected_keys:  # cannot happen after a clean check; never pass silently if it does
        raise WeightsError(f"internal: unexpected keys after checking: {_names(list(result.unexpected_keys))}")


def require_fit(check: KeyCheck, what: str, hint: str = "") -> None:
    """Raise ``WeightsError`` naming the keys when ``check`` found a problem."""
    if not check.ok:
        raise WeightsError(f"{what} do not fit; nothing was loaded: {check.describe()}{hint}")
