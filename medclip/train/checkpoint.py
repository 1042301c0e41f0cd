"""Checkpoints as DESIGN.md describes them: a directory that never needs unpickling.

    model.safetensors      weights only: "model.*" (the ContrastiveModel) and "loss.*" (learnable loss parameters)
    config.yaml            the full resolved ExperimentConfig
    preprocess.json        each modality's preprocessing fingerprint and learned state (tokenizer, gene vocabulary)
    trainer_state.json     step, sampler position, RNG states, optimizer hyper-parameters, scheduler (for --resume)
    optimizer.safetensors  optimizer moment tensors (for --resume)

Every file is written atomically and the directory is swapped in whole, so a crash mid-save leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..config import build, read_yaml, to_dict
from ..experiment import ExperimentConfig
from ..inference import Preprocess
from ..model import ContrastiveModel
from ..types import Modality
from .atomic import replace_directory, write_atomic, write_text_atomic
from .builder import build_model

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
PREPROCESS_FILE = "preprocess.json"
TRAINER_STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
DATA_FILE = "data_provenance.json"  # manifest hash, pseudonym-key fingerprint, the patients (pseudonyms) of each split
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, or in a format medclip refuses to read."""


def _contiguous(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or strided storage; a detached contiguous copy of each tensor is always accepted.
    return {key: value.detach().contiguous().clone() for key, value in state.items()}


def weights_state(
    model: torch.nn.Module,
    criterion: torch.nn.Module | None = None,
    model_state: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The model's (unwrapped from DDP) and the loss's parameters and buffers under "model." / "loss." prefixes.

    ``model_state``: the model's full state dict when it was gathered beforehand (FSDP shards live on many ranks).
    """
    if model_state is None:
        model_state = getattr(model, "module", model).state_dict()
    state = {f"model.{key}": value for key, value in model_state.items()}
    if criterion is not None:
        state.update({f"loss.{key}": value for key, value in criterion.state_dict().items()})
    return _contiguous(state)


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "python": repr(random.getstate()),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), numpy_state[2], numpy_state[3], numpy_state[4]],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [state.tolist() for state in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }


def _restore_rng_state(state: Mapping[str, Any]) -> None:
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
    return _contiguous(tensors), {"param_groups": groups, "scalars": scalars}


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
    return _optimizer_state_dict(load_file(str(path / OPTIMIZER_FILE)), meta)


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    config: ExperimentConfig,
    modalities: Mapping[str, Modality],
    criterion: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    trainer_state: Mapping[str, Any] | None = None,
    extra_json: Mapping[str, Any] | None = None,
    model_state: Mapping[str, torch.Tensor] | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint directory at ``path`` (atomically replacing an older one).

    ``extra_json`` maps file names to JSON-able data written into the same directory (e.g. the data provenance).
    ``model_state`` / ``optimizer_state``: full state dicts gathered beforehand (FSDP); by default the model's and
    the optimizer's own are saved. Either way the files hold the full, unsharded state.
    """
    path = Path(path)
    weights = weights_state(model, criterion, model_state)
    non_finite = [
        key for key, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()
    ]
    if non_finite:
        raise CheckpointError(
            f"refusing to save non-finite weights ({len(non_finite)} tensors, e.g. {non_finite[0]}); "
            "the previous checkpoint is kept"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".staging", dir=path.parent))
    try:
        metadata = {"format": "pt", "medclip_version": __version__}
        write_atomic(staging / MODEL_FILE, lambda temp: save_file(weights, str(temp), metadata))
        write_text_atomic(staging / CONFIG_FILE, _yaml(to_dict(config)))
        preprocess = {
            "medclip_version": __version__,
            "modalities": {n: p.preprocess_state() for n, p in modalities.items()},
        }
        write_text_atomic(staging / PREPROCESS_FILE, json.dumps(preprocess, indent=1, sort_keys=True))
        for name, data in (extra_json or {}).items():
            write_text_atomic(staging / name, json.dumps(data, indent=1, sort_keys=True))
        if trainer_state is not None:
            state: dict[str, Any] = {**trainer_state, "rng": _rng_state()}
            if optimizer is not None:
                tensors, optimizer_meta = _optimizer_tensors(optimizer, optimizer_state)
                write_atomic(staging / OPTIMIZER_FILE, lambda temp: save_file(tensors, str(temp), metadata))
                state["optimizer"] = optimizer_meta
            if scheduler is not None:
                state["scheduler"] = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
            write_text_atomic(staging / TRAINER_STATE_FILE, json.dumps(state))
        replace_directory(staging, path)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def check_checkpoint_path(path: str | Path) -> Path:
    """Refuse anything but a medclip checkpoint directory, naming the reason (pickle files are never opened)."""
    path = Path(path)
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path.name}: a pickle-based file ({path.suffix}); medclip never unpickles checkpoints. "
            "Convert the weights to safetensors first."
        )
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    missing = [name for name in (MODEL_FILE, CONFIG_FILE, PREPROCESS_FILE) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"{path} is not a complete medclip checkpoint: missing {', '.join(missing)}")
    return path


def read_data_provenance(path: str | Path) -> dict[str, Any] | None:
    """The data provenance saved with a checkpoint (None for checkpoints saved without it)."""
    file = Path(path) / DATA_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def read_config(path: str | Path) -> ExperimentConfig:
    return build(ExperimentConfig, read_yaml(Path(path) / CONFIG_FILE))


def restore_modalities(path: str | Path, config: ExperimentConfig) -> dict[str, Modality]:
    """Rebuild each modality plugin with its saved config and learned preprocessing state."""
    from .builder import build_modalities

    saved = json.loads((Path(path) / PREPROCESS_FILE).read_text())["modalities"]
    modalities = build_modalities(config)
    for name, plugin in modalities.items():
        if name not in saved:
            raise CheckpointError(f"{PREPROCESS_FILE} has no preprocessing state for modality {name!r}")
        plugin.load_preprocess_state(saved[name])
    return modalities


def load_weights(path: str | Path, model: torch.nn.Module, criterion: torch.nn.Module | None = None) -> None:
    """Load "model." (and "loss.") weights strictly: a missing or unexpected tensor is an error."""
    model_state, loss_state = split_weights(load_file(str(Path(path) / MODEL_FILE)))
    getattr(model, "module", model).load_state_dict(model_state, strict=True)
    if criterion is not None:
        criterion.load_state_dict(loss_state, strict=True)


def split_weights(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A checkpoint's weights -> (model state dict, loss state dict), without their "model." / "loss." prefixes."""
    model_state = {key[len("model.") :]: value for key, value in state.items() if key.startswith("model.")}
    loss_state = {key[len("loss.") :]: value for key, value in state.items() if key.startswith("loss.")}
    return model_state, loss_state


def load_trainer_state(
    path: str | Path, optimizer: torch.optim.Optimizer | None = None, scheduler: Any | None = None
) -> dict[str, Any]:
    """Restore optimizer moments, scheduler and RNG states; return the trainer state (step, sampler position)."""
    path = Path(path)
    if not (path / TRAINER_STATE_FILE).is_file():
        raise CheckpointError(f"{path} has no {TRAINER_STATE_FILE}: it was saved for inference only and cannot resume")
    state = json.loads((path / TRAINER_STATE_FILE).read_text())
    if optimizer is not None and "optimizer" in state:
        _restore_optimizer(optimizer, load_file(str(path / OPTIMIZER_FILE)), state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict({**scheduler.state_dict(), **state["scheduler"]})
    _restore_rng_state(state["rng"])
    return state


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[ContrastiveModel, Preprocess]:
    """Load a checkpoint for inference: the model (eval mode) and the preprocessing it was trained with."""
    path = check_checkpoint_path(path)
    config = read_config(path)
    modalities = restore_modalities(path, config)
    model = build_model(config, modalities)
    load_weights(path, model)
    model.to(device).eval()
    return model, Preprocess(modalities)
