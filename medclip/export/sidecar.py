"""The JSON sidecar written next to an exported tower: how to prepare its inputs and what its outputs mean.

A serving team gets the model file and this sidecar, not medclip's Python code, so the sidecar carries everything
needed to feed the tower correctly: the modality's preprocessing state and fingerprint (the same content as the
checkpoint's ``preprocess.json``: spacing, HU windows, sampling rate, lead order, tokenizer, gene vocabulary), each
input's name, dtype and shape with its dynamic dimensions, and each output's meaning. It holds no identifier and no
manifest value; options that hold a local path or model name (``cache_dir``, ``hf_model``) are shown as set only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import write_text_atomic
from ..model_card import hide_path_options
from .inputs import TowerInputs
from .tower import EMBEDDING, TOKEN_MASK, TOKENS

SIDECAR_FORMAT = "medclip.export/1"
OUTPUT_MEANINGS = {
    EMBEDDING: "(batch, embed_dim) float32 unit vectors in the shared embedding space; cosine similarity = dot product",
    TOKENS: "(batch, tokens, embed_dim) float32 unit token embeddings (sentences, patches, regions) for fine-grained "
    "matching",
    TOKEN_MASK: "(batch, tokens) bool, true where a token is real (not padding)",
}


def _shape(tensor: Any, axes: Mapping[int, str]) -> list[int | str]:
    return [axes.get(axis, int(size)) for axis, size in enumerate(tensor.shape)]


def preprocessing_fingerprint(state: Mapping[str, Any]) -> str:
    """sha256 of the preprocessing state (canonical JSON): equal fingerprints, identical preprocessing."""
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def sidecar(
    modality: str,
    export_format: str,
    method: str,
    runtime: str,
    inputs: TowerInputs,
    output_names: list[str],
    embed_dim: int,
    preprocess_state: Mapping[str, Any],
    check: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The sidecar's content (see the module docstring)."""
    return {
        "format": SIDECAR_FORMAT,
        "medclip_version": __version__,
        "modality": modality,
        "export_format": export_format,
        "method": method,
        "runtime": runtime,
        "embed_dim": embed_dim,
        "inputs": [
            {
                "name": name,
                "dtype": str(tensor.dtype).replace("torch.", ""),
                "shape": _shape(tensor, axes),
                "dynamic_axes": {str(axis): label for axis, label in axes.items()},
            }
            for name, tensor, axes in zip(inputs.names, inputs.example, inputs.dynamic, strict=True)
        ],
        "encoder_input": "dict of the inputs by name" if inputs.is_dict else "the single input tensor",
        "outputs": [{"name": name, "meaning": OUTPUT_MEANINGS[name]} for name in output_names],
        "preprocessing": {
            "how": f"prepare inputs exactly as medclip's `model.preprocess['{modality}']` does (load -> evaluation "
            "transforms -> collate); the state below fixes every setting and learned vocabulary",
            "fingerprint_sha256": preprocessing_fingerprint(preprocess_state),
            "state": hide_path_options(preprocess_state),  # the fingerprint is of the full state
        },
        "check": dict(check) if check is not None else None,
    }


def write_sidecar(path: Path, content: Mapping[str, Any]) -> Path:
    write_text_atomic(path, json.dumps(content, indent=1, sort_keys=False, default=str))
    return path
