"""ONNX: the tower captured with ``torch.export`` and translated by ``torch.onnx`` (its dynamo exporter), run with
onnxruntime. Needs the optional ``export`` extra (``onnx``, ``onnxscript``, ``onnxruntime``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..registry import lazy_import
from .inputs import TowerInputs
from .registry import EXPORTERS, Exporter
from .tower import EmbeddingTower

OPSET = 18  # onnxruntime >= 1.14 runs it; the dynamo exporter's lowest well-supported opset


@EXPORTERS.register("onnx")
class OnnxExporter(Exporter):
    suffix = ".onnx"
    runtime = "onnxruntime"
    method = "torch.onnx.export(dynamo=True): graph captured by torch.export, named dynamic axes"

    def export(self, tower: EmbeddingTower, inputs: TowerInputs, path: Path) -> None:
        lazy_import("onnxscript", "ONNX export", "onnxscript")
        dynamic = tuple(dict(axes) for axes in inputs.dynamic)
        program = torch.onnx.export(
            tower,
            tuple(inputs.example),
            input_names=list(inputs.names),
            output_names=tower.output_names,
            dynamic_shapes=(dynamic,),  # the tower takes *inputs: one entry holding each input's axes
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        program.save(str(path))

    def run(self, path: Path, tensors: list[Tensor], inputs: TowerInputs) -> list[np.ndarray]:
        onnxruntime = lazy_import("onnxruntime", "running an ONNX export", "onnxruntime")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        expected = {item.name for item in session.get_inputs()}
        feed = {name: tensor.numpy() for name, tensor in zip(inputs.names, tensors, strict=True) if name in expected}
        return session.run(None, feed)
