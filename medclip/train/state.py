"""What a checkpoint needs for ``--resume`` beyond the model: optimizer moments, scheduler, RNG states, position.

    trainer_state.json     step, sampler position, RNG states, optimizer hyper-parameters, scheduler
    optimizer.safetensors  optimizer moment tensors

``trainer_files`` returns the writer that ``medclip.checkpoint.save_model`` calls to add both files to the staging
directory, so a resumable checkpoint is swapped in as a whole like any other. Nothing here is pickled: tensors go to
safetensors, everything else to JSON (the Python RNG state as the repr of plain tuples, read back with
``ast.literal_eval``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..atomic import write_atomic, write_text_atomic
from ..checkpoint import CheckpointError, contiguous_copy

TRAINER_STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"


def rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "python": repr(random.getstate()),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), numpy_state[2], numpy_state[3], numpy_state[4]],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [state.tolist() for state in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    import ast

    random.setstate(ast.literal_eval(state["python"]))  # literal_eval: plain tuples of ints, never code
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(item, dtype=torch.uint8) for item in state["cuda"]])


def _optimizer_tensors(
    optimizer: torch.optim.Optimizer, state_dict: Mapping[str, Any] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state (``state_dict``, or the optimizer's own) into tensors and JSON-able hyper-parameters."""
    state_dict = optimizer.state_dict() if state_dict is None else state_dict
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    groups = [
        {key: (list(value) if isinstance(value, tuple) else value) for key, value in group.items()}
        for group in state_dict["param_groups"]
    ]
    return contiguous_copy(tensors), {"param_groups": groups, "scalars": scalars}


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> None:
    optimizer.load_state_dict(_optimizer_state_dict(tensors, meta))


def _optimizer_state_dict(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The full ``Optimizer.state_dict`` (integer parameter ids) from the saved tensors and hyper-parameters."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, param_id, name = key.split(".", 2)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, values in meta.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    groups = [
        {key: (tuple(value) if key == "betas" else value) for key, value in group.items()}
        for group in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def read_optimizer_state(path: str | Path) -> dict[str, Any] | None:
    """The full optimizer state dict saved in a checkpoint (None if it has none), for strategies that load it
    themselves (FSDP re-shards it onto the ranks)."""
    path = Path(path)
    if not (path / TRAINER_STATE_FILE).is_file():
        raise CheckpointError(f"{path} has no {TRAINER_STATE_FILE}: it was saved for inference only and cannot resume")
    meta = json.loads((path / TRAINER_STATE_FILE).read_text()).get("optimizer")
    if meta is None:
        return None
    return _optimizer_state_dict(_read_optimizer_tensors(path), meta)


def _read_optimizer_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path / OPTIMIZER_FILE))
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{OPTIMIZER_FILE} is not a readable safetensors file ({type(error).__name__})") from None


def trainer_files(
    trainer_state: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
) -> Callable[[Path], None]:
    """A ``write_extra`` for ``save_model``: writes the trainer state (+ RNG states) and the optimizer's tensors.

    ``optimizer_state``: the full optimizer state dict when gathered beforehand (FSDP); the optimizer's own otherwise.
    """

    def write(staging: Path) -> None:
        state: dict[str, Any] = {**trainer_state, "rng": rng_state()}
        if optimizer is not None:
            tensors, optimizer_meta = _optimizer_tensors(optimizer, optimizer_state)
            metadata = {"format": "pt", "medclip_version": __version__}
            write_atomic(staging / OPTIMIZER_FILE, lambda temp: save_file(tensors, str(temp), metadata))
            state["optimizer"] = optimizer_meta
        if scheduler is not None:
            state["scheduler"] = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
        write_text_atomic(staging / TRAINER_STATE_FILE, json.dumps(state))

    return write


def load_trainer_state(
    path: str | Path, optimizer: torch.optim.Optimizer | None = None, scheduler: Any | None = None
) -> dict[str, Any]:
    """Restore optimizer moments, scheduler and RNG states; return the trainer state (step, sampler position)."""
    path = Path(path)
    if not (path / TRAINER_STATE_FILE).is_file():
        raise CheckpointError(f"{path} has no {TRAINER_STATE_FILE}: it was saved for inference only and cannot resume")
    state = json.loads((path / TRAINER_STATE_FILE).read_text())
    if optimizer is not None and "optimizer" in state:
        _restore_optimizer(optimizer, _read_optimizer_tensors(path), state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict({**scheduler.state_dict(), **state["scheduler"]})
    restore_rng_state(state["rng"])
    return state
