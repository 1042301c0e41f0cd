"""``medclip inspect PATH``: a JSON summary of one input, through the plugin that would read it in training.

Only what the plugin's allow-listed metadata carries is shown (shape, dtype, spacing, sampling rate, ...), with a
pseudonym instead of the path: file names often hold patient names or accession numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import MODALITIES, get_modality


def guess_modality(path: str) -> str:
    """The registered modality whose ``file_suffixes`` match ``path`` (ignoring a ``#fragment``).

    A folder is claimed by the plugins whose class sets ``reads_directories = True`` (CT: DICOM series folders).
    """
    name = path.split("#", 1)[0].lower()
    if Path(path.split("#", 1)[0]).is_dir():  # a folder (a DICOM series): plugins that read folders claim it
        matches = [modality for modality, cls in MODALITIES.items() if cls.reads_directories]
    else:
        matches = [
            modality
            for modality, cls in MODALITIES.items()
            if any(name.endswith(suffix) for suffix in getattr(cls, "file_suffixes", ()))
        ]
    if len(matches) != 1:
        known = ", ".join(MODALITIES.names())
        reason = "several modalities read it" if matches else "no modality claims its file type"
        raise ValueError(f"cannot tell which modality reads this input ({reason}); pass --modality ({known})")
    return matches[0]


def describe_value(value: Any) -> Any:
    """Shape/dtype of arrays and tensors, length of text; recursing into dicts. Never the content itself."""
    if isinstance(value, np.ndarray | torch.Tensor):
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, str):
        return {"type": "text", "n_chars": len(value)}
    if isinstance(value, dict):
        return {key: describe_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return {"type": "list", "length": len(value)}
    return {"type": type(value).__name__}


def inspect_input(path: str, modality: str | None = None) -> dict[str, Any]:
    from .data.pseudonym import Pseudonymizer

    name = modality or guess_modality(path)
    plugin = get_modality(name)
    ref = plugin.resolve(path, Path.cwd())
    sample = plugin.load(ref)
    base, _, fragment = path.partition("#")
    identity = str(Path(base).resolve()) + (f"#{fragment}" if fragment else "")
    summary: dict[str, Any] = {
        "modality": name,
        "input_pseudonym": Pseudonymizer.from_environment().pseudonym(identity, kind="study"),
        "data": describe_value(sample[name]),
    }
    meta = sample.get(f"{name}_meta")
    if meta:
        summary["meta"] = meta
    return summary
