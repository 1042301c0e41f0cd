"""``torch.export``: the tower as an ``ExportedProgram`` (``.pt2``), with symbolic batch and lengths, run with
``torch.export.load(...).module()``; the format AOTInductor and ExecuTorch compile from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.export import Dim

from .inputs import TowerInputs
from .registry import EXPORTERS, Exporter
from .tower import EmbeddingTower


def dynamic_shapes(inputs: TowerInputs) -> tuple:
    """``torch.export`` dynamic shapes of the tower's ``*inputs``.

    ``Dim.DYNAMIC`` rather than named ``Dim`` objects: the tracer infers each dimension's range (a report encoder
    bounds the length by ``max_tokens``) and the equalities between inputs (one length for ``input_ids`` and
    ``attention_mask``), and still fails if the program would fix a dimension that should vary.
    """
    return (tuple({axis: Dim.DYNAMIC for axis in axes} for axes in inputs.dynamic),)


@EXPORTERS.register("exported-program")
class ExportedProgramExporter(Exporter):
    suffix = ".pt2"
    runtime = "torch.export.load(...).module() (or AOTInductor / ExecuTorch)"
    method = "torch.export.export with symbolic dimensions (EncoderOutput is a registered pytree)"

    def export(self, tower: EmbeddingTower, inputs: TowerInputs, path: Path) -> None:
        program = torch.export.export(tower, tuple(inputs.example), dynamic_shapes=dynamic_shapes(inputs))
        torch.export.save(program, str(path))

    def run(self, path: Path, tensors: list[Tensor], inputs: TowerInputs) -> list[np.ndarray]:
        module = torch.export.load(str(path)).module()
        with torch.no_grad():
            outputs = module(*tensors)
        return [output.numpy() for output in outputs]
