"""The exporter registry: one entry per serving format (``onnx``, ``torchscript``, ``exported-program``).

An exporter writes a tower (``EmbeddingTower``) to a file and runs that file again on new inputs, so that every
export is checked numerically against the eager model before it is handed over. A third-party format registers the
same way, from code (``@EXPORTERS.register("name")``) or through the ``medclip.exporters`` entry-point group.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from torch import Tensor

from ..registry import Registry
from .inputs import TowerInputs
from .tower import EmbeddingTower


class Exporter:
    """Writes a tower in one format and runs the written file.

    Attributes:
        suffix: the file name ending (".onnx").
        runtime: what runs the file in serving, for the sidecar ("onnxruntime").
        method: how the graph is captured and why, for the sidecar and docs/export.md.
    """

    suffix: ClassVar[str] = ""
    runtime: ClassVar[str] = ""
    method: ClassVar[str] = ""

    def export(self, tower: EmbeddingTower, inputs: TowerInputs, path: Path) -> None:
        raise NotImplementedError

    def run(self, path: Path, tensors: list[Tensor], inputs: TowerInputs) -> list[np.ndarray]:
        """Run the written file on ``tensors`` (in ``inputs.names`` order); its outputs as arrays."""
        raise NotImplementedError


EXPORTERS: Registry[type[Exporter]] = Registry("export format", "medclip.exporters")


def list_exporters(pattern: str | None = None) -> list[str]:
    """Names of every export format (``onnx``, ``torchscript``, ``exported-program``, third-party ones)."""
    return EXPORTERS.names(pattern)
