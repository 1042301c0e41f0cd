"""Small helpers several test files share (fixtures live in the conftest.py files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from medclip.types import ModalityError
from modalities.volume.geometry import LPS_TO_RAS


def refusal(call: Callable[[], Any]) -> str:
    """The reason code of the ModalityError that ``call()`` raises (fails the test when none is raised)."""
    with pytest.raises(ModalityError) as raised:
        call()
    return raised.value.reason


def checkpoint_weights(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint folder's model weights, read with safetensors (no unpickling)."""
    return load_file(str(Path(checkpoint) / "model.safetensors"))


def unit_rows(rows: int, dim: int, seed: int) -> torch.Tensor:
    """``rows`` random unit vectors of size ``dim`` (a fixed generator: the same rows for the same seed)."""
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator), dim=-1)


def lps_affine(row, column, spacing, origin) -> np.ndarray:
    """The RAS affine of a DICOM series with direction cosines ``row``/``column`` (LPS) and (col, row, slice) mm."""
    normal = np.cross(row, column)
    affine = np.eye(4)
    affine[:3, 0] = np.asarray(row, dtype=float) * spacing[0]
    affine[:3, 1] = np.asarray(column, dtype=float) * spacing[1]
    affine[:3, 2] = normal * spacing[2]
    affine[:3, 3] = origin
    return LPS_TO_RAS @ affine


def same_encoder_input(a: Any, b: Any) -> bool:
    """Whether two collated encoder inputs (a tensor, or a dict of tensors such as a report's token ids) are equal."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(same_encoder_input(a[key], b[key]) for key in a)
        )
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
