"""Opening a ``weights:`` source: a ``.safetensors`` file, or a directory of them; pickle-based files are refused.

A source is checked when opened (it exists, it is safetensors, its header parses) without reading its tensors, so a
run can refuse a wrong path before it reads any data. The metadata that ``medclip convert-weights`` writes into the
file's header says where in the encoder its tensors belong and what the weights expect of the input:

    medclip.scope       the encoder sub-module the tensors fill ("" or absent = the whole encoder)
    medclip.source      the importer that wrote it (open_clip, timm, monai_resnet, medicalnet)
    medclip.modality    the modality it was converted for
    medclip.settings    JSON: the modality options the weights need (``encoder``, ``patch_encoder``, ...)
    medclip.pixel_mean  JSON list: the normalisation the weights were trained with (image encoders)
    medclip.pixel_std   JSON list
    medclip.tokenizer   JSON: the tokenizer whose ids the weights' token embedding rows stand for (text towers)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..checkpoint import PICKLE_SUFFIXES
from .strict import WeightsError

SAFETENSORS_SUFFIX = ".safetensors"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"  # Hugging Face's sharded layout: {"weight_map": {tensor: shard file}}
SCOPE = "medclip.scope"
SOURCE = "medclip.source"
MODALITY = "medclip.modality"
SETTINGS = "medclip.settings"
PIXEL_MEAN = "medclip.pixel_mean"
PIXEL_STD = "medclip.pixel_std"
TOKENIZER = "medclip.tokenizer"
_PICKLE_HEADS = (b"PK\x03\x04", b"\x80")  # torch.save's zip container; a pickle stream of protocol >= 2


def convert_hint(name: str = "MODALITY") -> str:
    return (
        f" Convert it once with `medclip convert-weights SOURCE DEST.safetensors --from FORMAT --to {name}` "
        "(FORMAT: open_clip, timm, monai_resnet, medicalnet; add --trust-pickle for a .pt/.pth file you trust)."
    )


def refuse_pickle(path: Path, what: str) -> WeightsError:
    return WeightsError(
        f"{what}: {path.name} is a pickle-based file; loading it could run code stored in it, so medclip never "
        f"unpickles weights.{convert_hint()}"
    )


def _looks_pickled(path: Path) -> bool:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    with open(path, "rb") as stream:
        head = stream.read(4)
    return any(head.startswith(mark) for mark in _PICKLE_HEADS)


@dataclass(frozen=True)
class WeightsSource:
    """An opened ``weights:`` source: its safetensors files and the metadata of the first one."""

    files: tuple[Path, ...]
    metadata: dict[str, str]

    @property
    def name(self) -> str:
        if len(self.files) == 1:
            return self.files[0].name
        return f"{self.files[0].parent.name}/ ({len(self.files)} files)"

    @property
    def scope(self) -> str:
        return self.metadata.get(SCOPE, "")

    def setting(self, key: str) -> Any:
        """A JSON value of the metadata (None when absent)."""
        value = self.metadata.get(key)
        return json.loads(value) if value is not None else None

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor of every file (a name held by two shards is an error)."""
        from safetensors.torch import load_file

        tensors: dict[str, Tensor] = {}
        for path in self.files:
            try:
                part = load_file(str(path))
            except Exception as error:  # safetensors raises its own error types for corrupt files
                raise WeightsError(f"{path.name}: not a readable safetensors file ({type(error).__name__})") from None
            repeated = sorted(set(part) & set(tensors))
            if repeated:
                raise WeightsError(f"{path.name}: tensors also held by another shard: {', '.join(repeated[:5])}")
            tensors.update(part)
        return tensors

    def sha256(self) -> str:
        """A fingerprint of the files' bytes, recorded in the model card instead of the path."""
        digest = hashlib.sha256()
        for path in self.files:
            with open(path, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 22), b""):
                    digest.update(block)
        return digest.hexdigest()


def _header(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise WeightsError(f"{path.name}: not a readable safetensors file ({type(error).__name__})") from None


def _directory_files(folder: Path, what: str) -> list[Path]:
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise WeightsError(f"{what}: {INDEX_FILE} is not a sharded-weights index") from None
        files = []
        for shard in shards:
            path = folder / str(shard)
            if Path(str(shard)).name != str(shard) or path.suffix != SAFETENSORS_SUFFIX or not path.is_file():
                raise WeightsError(f"{what}: {INDEX_FILE} names a shard that is not a safetensors file in the folder")
            files.append(path)
        return files
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    files = sorted(path for path in folder.iterdir() if path.suffix == SAFETENSORS_SUFFIX and path.is_file())
    if not files:
        pickled = sorted(path for path in folder.iterdir() if path.suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise refuse_pickle(pickled[0], what)
        raise WeightsError(f"{what}: the folder {folder.name} holds no .safetensors file")
    return files


def open_weights(path: str | Path, what: str = "weights") -> WeightsSource:
    """Check a ``weights:`` source and read its metadata (not its tensors).

    Args:
        path: a ``.safetensors`` file, or a directory holding ``model.safetensors``, a sharded
            ``model.safetensors.index.json`` or ``.safetensors`` files.
        what: how the error names the option (``modalities.ct.weights``).

    Raises:
        WeightsError: missing, pickle-based (naming ``medclip convert-weights``), not safetensors, or unreadable.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"{what}: weights not found: {path.name}")
    if path.is_dir():
        files = _directory_files(path, what)
    elif path.suffix.lower() == SAFETENSORS_SUFFIX:
        files = [path]
    elif _looks_pickled(path):
        raise refuse_pickle(path, what)
    else:
        raise WeightsError(f"{what}: {path.name} is not a .safetensors file or a folder of them")
    return WeightsSource(tuple(files), _header(files[0]))


def read_metadata(path: str | Path, what: str = "weights") -> dict[str, str]:
    """The metadata of a ``weights:`` source (see the module docstring)."""
    return open_weights(path, what).metadata
