"""TorchScript: the tower traced with ``torch.jit.trace`` on an example batch, run with ``torch.jit.load``.

Traced, not scripted: ``torch.jit.script`` compiles Python source and cannot compile the encoders built from timm,
MONAI and transformers blocks (keyword-only arguments, dataclass outputs, dynamic Python), nor a dict input. A
trace records the tensor operations run on the example; sizes read from ``tensor.shape`` stay symbolic, so the batch
and a report's length remain free, and the export is checked on another batch size and other lengths. A trace
keeps one branch of data-dependent Python control flow, which is why the check runs on inputs other than the
example.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .inputs import TowerInputs
from .registry import EXPORTERS, Exporter
from .tower import EmbeddingTower


@EXPORTERS.register("torchscript")
class TorchScriptExporter(Exporter):
    suffix = ".torchscript.pt"
    runtime = "torch.jit.load (LibTorch in C++)"
    method = "torch.jit.trace (script cannot compile timm/MONAI/transformers encoders); checked on other shapes"

    def export(self, tower: EmbeddingTower, inputs: TowerInputs, path: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings; the numerical check is the judge
            traced = torch.jit.trace(tower, tuple(inputs.example), check_trace=False, strict=False)
            torch.jit.save(traced, str(path))

    def run(self, path: Path, tensors: list[Tensor], inputs: TowerInputs) -> list[np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            outputs = module(*tensors)
        return [output.numpy() for output in outputs]
