"""Importing weights that were not written by medclip (a ``.pt`` from a paper's release, a colleague's ``.ckpt``).

medclip's own checkpoints are safetensors and never need unpickling (``checkpoint.py``). Foreign PyTorch files are
pickles: loading one can run arbitrary code, because unpickling calls whatever functions the file names. So:

- ``.safetensors`` files are read directly (tensors only, no code);
- pickle-based files are refused unless the caller passes ``trust_pickle=True`` (``--trust-pickle`` on the command
  line), and even then they are read with ``torch.load(..., weights_only=True)``, PyTorch's restricted unpickler that
  only rebuilds tensors and plain containers and rejects any other object (and so any ``__reduce__`` payload);
- the result is converted once to safetensors (``convert_weights``) so the pickle never has to be opened again.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..atomic import write_atomic
from ..checkpoint import PICKLE_SUFFIXES, CheckpointError

SAFETENSORS_SUFFIX = ".safetensors"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container
_PICKLE_PROTOCOL_MARK = 0x80  # first byte of a pickle of protocol 2 or later (legacy torch.save files too)
_REFUSAL = re.compile(r"Unsupported (?:global|operand|class)[^.\n]{0,120}")
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "module", "weights")  # common wrappers in releases


def is_pickle_file(path: Path) -> bool:
    """Whether ``path`` holds (or may hold) a pickle: by suffix, or by its first bytes whatever its name."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    with open(path, "rb") as stream:
        head = stream.read(4)
    return head.startswith(_ZIP_MAGIC) or (len(head) > 0 and head[0] == _PICKLE_PROTOCOL_MARK)


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with serialized code), read from its member names only."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(
                name.split("/", 2)[1:2] == ["code"] or name.endswith("/constants.pkl") for name in archive.namelist()
            )
    except (zipfile.BadZipFile, OSError):
        return False


def _flatten(state: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested dicts of tensors -> one flat ``{"a.b.c": tensor}``; anything that is not a tensor is an error."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"the file holds a {type(state).__name__} at {prefix or 'the top level'!r}; only tensors in (nested) "
            "dictionaries can be imported"
        )
    flat: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _unwrap(state: Any) -> Any:
    """Releases often save ``{"state_dict": ..., "epoch": 3}``: keep the weights, drop the bookkeeping."""
    if isinstance(state, Mapping):
        for key in _STATE_DICT_KEYS:
            if isinstance(state.get(key), Mapping):
                return state[key]
    return state


def import_torch_weights(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read user-supplied weights into a flat ``{name: tensor}`` dict, never running code from the file.

    Args:
        path: a ``.safetensors`` file, or a pickle-based PyTorch file (``.pt``, ``.pth``, ``.bin``, ``.ckpt``, ...).
        trust_pickle: allow pickle-based files. Even then only ``torch.load(weights_only=True)`` is used, which
            refuses any object other than tensors and plain containers.

    Raises:
        CheckpointError: the file is missing, is a pickle and ``trust_pickle`` is False, holds objects other than
            tensors (the restricted unpickler's refusal), or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path.name}")
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path.name}: not a readable safetensors file ({type(error).__name__})") from None
    if not is_pickle_file(path):
        raise CheckpointError(f"{path.name}: unknown weights format; expected .safetensors or a PyTorch file")
    if not trust_pickle:
        raise CheckpointError(
            f"{path.name} is a pickle-based file: loading it could run code stored in it, so medclip refuses. If you "
            "trust its source, pass --trust-pickle (trust_pickle=True): it is then read with "
            "torch.load(weights_only=True), which accepts tensors only, and can be converted to safetensors once "
            "with `medclip convert-weights`."
        )
    if is_torchscript(path):
        raise CheckpointError(
            f"{path.name} is a TorchScript archive (as OpenAI's original CLIP .pt files are): it holds code, which "
            "medclip never loads. Load it once where you trust it (open_clip.create_model(NAME, pretrained=FILE)), "
            "save model.state_dict() with safetensors.torch.save_file, and convert that file."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message suggests weights_only=False, which medclip never does: keep only what was refused
        refused = _REFUSAL.search(str(error))
        detail = f" ({refused.group().strip()})" if refused else ""
        raise CheckpointError(
            f"{path.name}: refused by torch.load(weights_only=True): the file holds objects other than tensors, "
            f"which could run code when unpickled{detail}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name}: not a readable PyTorch file ({type(error).__name__})") from None
    return {name: tensor.detach().contiguous() for name, tensor in _flatten(_unwrap(state)).items()}


def convert_weights(source: str | Path, destination: str | Path, trust_pickle: bool = False) -> Path:
    """Import ``source`` (see ``import_torch_weights``) and write it as safetensors at ``destination``, atomically.

    Tensors that share storage (tied weights) are stored as separate copies, since safetensors has no aliasing.
    """
    destination = Path(destination)
    if destination.suffix.lower() != SAFETENSORS_SUFFIX:
        raise CheckpointError(f"{destination.name}: the converted file must end in {SAFETENSORS_SUFFIX}")
    tensors = {name: tensor.clone() for name, tensor in import_torch_weights(source, trust_pickle).items()}
    metadata = {"format": "pt", "converted_from": Path(source).suffix.lower() or "unknown"}
    return write_atomic(destination, lambda temp: save_file(tensors, str(temp), metadata))
