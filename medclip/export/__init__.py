"""Exporting modality towers for serving: ONNX, TorchScript and ``torch.export`` programs, each checked numerically
against the eager model and described by a JSON sidecar (see docs/export.md).

    medclip export CHECKPOINT --format onnx --modality report --out served/
    medclip.export.export_tower(model, "report", "onnx", "served/")
"""

from __future__ import annotations

from . import exported_program_exporter, onnx_exporter, torchscript_exporter  # noqa: F401  (register the formats)
from .export_tower import ExportCheckError, ExportResult, export_tower
from .registry import EXPORTERS, Exporter, list_exporters
from .tower import EmbeddingTower

__all__ = [
    "EXPORTERS",
    "EmbeddingTower",
    "ExportCheckError",
    "ExportResult",
    "Exporter",
    "export_tower",
    "list_exporters",
]
