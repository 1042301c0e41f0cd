"""``export_tower``: one modality tower of a model -> a serving file, checked against the eager model, + a sidecar.

Steps: build the tower (encoder + projection head, eval mode), derive example inputs and dynamic dimensions from the
plugin's synthetic data (or the user's examples) through the model's own preprocessing (``inputs``), write the file
with the format's exporter, run the written file on a batch of another size, and on that batch cut to a shorter
length where lengths vary, compare every output with the eager tower's, then write ``<modality>.json``. A mismatch
beyond the tolerance is an error: a file that serves other numbers than the model must not be handed over.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .inputs import check_batch, example_samples, shortened, tower_inputs
from .registry import EXPORTERS
from .sidecar import sidecar, write_sidecar
from .tower import TOKEN_MASK, TOKENS, EmbeddingTower

TOLERANCE = 1e-4  # float32 outputs of unit vectors: differences of kernels and fusion stay far below


class ExportCheckError(RuntimeError):
    """The exported file's outputs differ from the eager model's beyond the tolerance."""


@dataclass
class ExportResult:
    """Where the export went and how it compared with the eager model.

    Attributes:
        model: the exported file.
        sidecar: the JSON sidecar.
        check: batch size used for the check and the largest absolute difference per output, or None (not checked).
    """

    model: Path
    sidecar: Path
    check: dict[str, Any] | None


def _load(model_or_checkpoint: Any, allow_download: bool) -> Any:
    if isinstance(model_or_checkpoint, torch.nn.Module):
        return model_or_checkpoint
    from ..checkpoint import load_model

    return load_model(model_or_checkpoint, allow_download=allow_download)


def _compare(expected: list[torch.Tensor], produced: list[np.ndarray], names: list[str]) -> dict[str, float]:
    """Largest absolute difference per output (mismatching entries for a mask).

    Token embeddings are compared where the eager token mask marks real tokens: padding tokens carry no meaning,
    and their order among tied values (a cell's unexpressed genes in a top-k) is an implementation detail that
    runtimes resolve differently.
    """
    outputs = dict(zip(names, expected, strict=True))
    real = outputs[TOKEN_MASK].numpy() if TOKEN_MASK in outputs else None  # (B, T) bool
    differences = {}
    for name, want, got in zip(names, expected, produced, strict=True):
        got = np.asarray(got)
        if tuple(got.shape) != tuple(want.shape):
            raise ExportCheckError(f"output {name!r}: shape {tuple(got.shape)} instead of {tuple(want.shape)}")
        if want.dtype == torch.bool:
            differences[name] = float(np.sum(got.astype(bool) != want.numpy()))
            continue
        difference = np.abs(got.astype(np.float64) - want.double().numpy())
        if name == TOKENS and real is not None:
            difference = difference[real]  # (real tokens, D)
        differences[name] = float(np.max(difference, initial=0.0))
        if differences[name] > TOLERANCE:
            raise ExportCheckError(f"output {name!r} differs from the eager model by {differences[name]:.3g}")
    return differences


def _break_ties(tensors: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """The inputs with floating values scaled by 1 + ~1e-3 noise (zeros stay zero): no two values tie any more."""
    generator = torch.Generator().manual_seed(seed)
    jittered = []
    for tensor in tensors:
        if tensor.is_floating_point():
            noise = torch.rand(tensor.shape, generator=generator, dtype=torch.float32) * 1e-3
            tensor = (tensor.float() * (1.0 + noise)).to(tensor.dtype)
        jittered.append(tensor)
    return jittered


def _check(tower: EmbeddingTower, exporter: Any, path: Path, inputs: Any, tensors: list[torch.Tensor]) -> dict:
    """Run the exported file and the eager tower on ``tensors``; the differences, or ExportCheckError.

    Where outputs are ranked by value (a cell's top-expressed genes as tokens), runtimes order tied values
    differently; such a mismatch is checked again on the same inputs with ties broken (floating values scaled by
    1 + ~1e-3), which must then agree exactly, and the check says so (``ties_broken``).
    """
    with torch.no_grad():
        expected = list(tower(*tensors))
    try:
        return {"max_abs_difference": _compare(expected, exporter.run(path, tensors, inputs), tower.output_names)}
    except ExportCheckError as error:
        if not any(tensor.is_floating_point() for tensor in tensors):
            raise
        first_error = str(error)
    untied = _break_ties(tensors)
    with torch.no_grad():
        expected = list(tower(*untied))
    differences = _compare(expected, exporter.run(path, untied, inputs), tower.output_names)
    return {"max_abs_difference": differences, "ties_broken": True, "on_tied_inputs": first_error}


def export_tower(
    model_or_checkpoint: Any,
    modality: str,
    export_format: str,
    out: str | os.PathLike,
    allow_download: bool = False,
    check: bool = True,
    check_batch_size: int = 3,
    examples: Sequence[Any] = (),
) -> ExportResult:
    """Export ``modality``'s tower of a model (or checkpoint folder) in ``export_format`` into ``out``.

    Args:
        model_or_checkpoint: a ``ContrastiveModel`` with its preprocessing, or a checkpoint folder (hub id with
            ``allow_download``).
        modality: the tower to export.
        export_format: a name of ``EXPORTERS`` ("onnx", "torchscript", "exported-program").
        out: output folder; gets ``<modality><suffix>`` and ``<modality>.json``.
        allow_download: resolve a hub id (never by default).
        check: run the written file and compare with the eager model (default; only skip when the serving runtime
            is not installed here).
        check_batch_size: batch size of the check (differs from the example's 2, so a fixed batch is caught).
        examples: references of real inputs (paths, texts, ``cells.h5ad#row=3``) to export and check with, at least
            two of different lengths where lengths vary; by default the plugin's synthetic samples.

    Raises:
        RegistryError: an unknown format. KeyError: a modality the model lacks. ExportCheckError: a mismatch.
    """
    exporter = EXPORTERS.get(export_format)()
    model = _load(model_or_checkpoint, allow_download).eval()
    preprocess = model.preprocess[modality]
    samples = example_samples(model, modality, examples)
    inputs = tower_inputs(model, modality, samples)
    with torch.no_grad():
        output = model.encoders[modality](
            dict(zip(inputs.names, inputs.example, strict=True)) if inputs.is_dict else inputs.example[0]
        )
    tower = EmbeddingTower(
        model.encoders[modality], model.heads[modality], inputs.names if inputs.is_dict else None,
        with_tokens=output.tokens is not None,
    ).eval()  # fmt: skip
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{modality}{exporter.suffix}"
    exporter.export(tower, inputs, path)
    result = None
    if check:
        tensors = check_batch(model, modality, samples, check_batch_size)
        result = {
            "batch_size": check_batch_size,
            **_check(tower, exporter, path, inputs, tensors),
            "tolerance": TOLERANCE,
        }
        shorter = shortened(inputs, tensors)
        if shorter is not None:  # another length as well as another batch size
            result["shorter_inputs"] = {
                "shapes": [list(tensor.shape) for tensor in shorter],
                **_check(tower, exporter, path, inputs, shorter),
            }
    embed_dim = model._embed_dim(modality)
    content = sidecar(modality, export_format, exporter.method, exporter.runtime, inputs, tower.output_names,
                      embed_dim, preprocess.state(), result)  # fmt: skip
    return ExportResult(path, write_sidecar(folder / f"{modality}.json", content), result)
