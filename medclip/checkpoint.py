"""Checkpoints: a directory that never needs unpickling, written atomically, readable without the recipe that wrote it.

    model.safetensors    weights only: "model.*" (the ContrastiveModel) and "loss.*" (learnable loss parameters)
    config.yaml          the model card: modalities and their options, embedding settings, training provenance
    preprocess.json      each modality's preprocessing fingerprint and learned state (tokenizer, gene vocabulary)
    README.md            the model card for people and the Hugging Face hub (``medclip.model_card``; counts only)
    files/<modality>/    optional: files a plugin needs beyond preprocess.json (a Hugging Face model's config and
                         tokenizer), so the checkpoint never depends on a folder elsewhere; the card names each folder
                         relative to the checkpoint (``files``)
    data_provenance.json optional: manifest hash, pseudonym-key fingerprint, the pseudonymised patients of each split
    (+ files a writer adds, e.g. the trainer's ``trainer_state.json`` and ``optimizer.safetensors`` for resume)

The model card describes the model, not the run that produced it: ``create_model`` rebuilds the model from its
``modalities`` and ``model`` sections alone, and ``training`` (loss, split settings, steps) is metadata that
evaluation uses to find the patients pretraining held out. Checkpoints written before the model card (whose
``config.yaml`` is a whole pretraining config) are read as cards unchanged (``card_from_pretrain_config``).

Every file is written atomically and the directory is swapped in whole, so a crash mid-save leaves the previous
checkpoint intact. No path, file name or identifier is stored: a card can be shared.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .atomic import replace_directory, write_atomic, write_text_atomic
from .config import build, read_yaml, to_dict
from .data.split import SplitConfig
from .factory import ModelConfig, ModelSpec, build_modalities, build_model
from .hub import resolve_checkpoint
from .model import ContrastiveModel
from .model_card import README_FILE, render_model_card
from .types import Modality

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
PREPROCESS_FILE = "preprocess.json"
FILES_DIR = "files"  # files/<modality>/: what a plugin's save_files wrote
DATA_FILE = "data_provenance.json"  # manifest hash, pseudonym-key fingerprint, the patients (pseudonyms) of each split
# A card flag of checkpoints that hold an encoder for warm starts only (the MAE pre-stage): load_model refuses them.
ENCODER_ONLY = "encoder_only"
CARD_FORMAT = "medclip.model/2"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, or in a format medclip refuses to read."""


@dataclass
class ModelCard(ModelSpec):
    """A model description plus where it came from (stored as ``config.yaml``).

    Attributes:
        modalities: modality name -> the plugin's options (as ``ModelSpec``).
        model: embedding settings (as ``ModelSpec``).
        training: provenance metadata, never needed to build the model: ``recipe``, ``loss``, ``split``
            (``val_fraction``, ``test_fraction``, ``split_seed``: how pretraining split patients), ``steps``,
            ``warm_start`` / ``init_from`` (what the encoders started from, by fingerprint, never by path), ...
        files: modality -> the folder of its plugin's files, relative to the checkpoint (``files/report``); filled
            when the checkpoint is saved.
        format: the card format, for readers of older or newer checkpoints.
        medclip_version: the version that wrote it.
    """

    training: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    format: str = CARD_FORMAT
    medclip_version: str = __version__

    def spec(self) -> ModelSpec:
        return ModelSpec(modalities=self.modalities, model=self.model)

    def split_config(self) -> SplitConfig:
        """How pretraining divided patients into train / val / test (defaults for cards that do not say)."""
        return build(SplitConfig, self.training.get("split") or {}, _path="training.split")


def card_from_pretrain_config(data: Mapping[str, Any]) -> ModelCard:
    """A model card from a checkpoint written before cards existed (``config.yaml`` = the pretraining config)."""
    split_keys = ("val_fraction", "test_fraction", "split_seed")
    data_section = data.get("data") or {}
    training = {
        "recipe": "pretrain",
        "loss": data.get("loss", {"clip": 1.0}),
        "split": {key: data_section[key] for key in split_keys if key in data_section},
        "train": data.get("train", {}),
    }
    return ModelCard(
        modalities=dict(data.get("modalities") or {}),
        model=build(ModelConfig, data.get("model") or {}, _path="model"),
        training=training,
        format="medclip.pretrain-config/1",
    )


def contiguous_copy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached, contiguous copy of each tensor: what every safetensors file medclip writes holds (model weights,
    optimizer and EMA state), since safetensors refuses tensors that share or stride their storage."""
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
    return contiguous_copy(state)


def save_model(
    path: str | Path,
    model: torch.nn.Module,
    modalities: Mapping[str, Modality],
    card: ModelCard,
    criterion: torch.nn.Module | None = None,
    model_state: Mapping[str, torch.Tensor] | None = None,
    extra_json: Mapping[str, Any] | None = None,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a complete checkpoint directory at ``path`` (atomically replacing an older one).

    Args:
        path: the checkpoint directory.
        model: the model (DDP-wrapped is fine).
        modalities: its fitted plugins, whose preprocessing state is saved.
        card: the model card.
        criterion: the loss, whose learnable parameters are saved as "loss.*".
        model_state: the model's full state dict when gathered beforehand (FSDP); the model's own by default.
        extra_json: file name -> JSON-able data written into the same directory (e.g. the data provenance).
        write_extra: called with the staging directory to add more files before the swap (the trainer's state).
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
        files = {name: f"{FILES_DIR}/{name}" for name, plugin in modalities.items()
                 if plugin.save_files(staging / FILES_DIR / name)}  # fmt: skip
        write_text_atomic(staging / CONFIG_FILE, _yaml(to_dict(replace(card, files=files))))
        preprocess = {
            "medclip_version": __version__,
            "modalities": {name: plugin.preprocess_state() for name, plugin in modalities.items()},
        }
        write_text_atomic(staging / PREPROCESS_FILE, json.dumps(preprocess, indent=1, sort_keys=True))
        for name, data in (extra_json or {}).items():
            write_text_atomic(staging / name, json.dumps(data, indent=1, sort_keys=True))
        # The Hugging Face-style card (counts only): the folder can be shared with huggingface_hub tools unchanged.
        write_text_atomic(staging / README_FILE, render_model_card(card, preprocess, (extra_json or {}).get(DATA_FILE)))
        if write_extra is not None:
            write_extra(staging)
        replace_directory(staging, path)
    except BaseException:
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
            "Convert the weights to safetensors first with `medclip convert-weights`."
        )
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    missing = [name for name in (MODEL_FILE, CONFIG_FILE, PREPROCESS_FILE) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"{path} is not a complete medclip checkpoint: missing {', '.join(missing)}")
    return path


def read_card(path: str | Path) -> ModelCard:
    """The model card of a checkpoint directory (older checkpoints' pretraining configs are converted)."""
    data = read_yaml(Path(path) / CONFIG_FILE)
    if "format" not in data:
        return card_from_pretrain_config(data)
    return build(ModelCard, data, _path=CONFIG_FILE)


def read_data_provenance(path: str | Path) -> dict[str, Any] | None:
    """The data provenance saved with a checkpoint (None for checkpoints saved without it)."""
    file = Path(path) / DATA_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def checkpoint_folder(checkpoint: str | Path, relative: str) -> Path:
    """A folder a model card names relative to its checkpoint; one outside the checkpoint (``..``, an absolute
    path, a link out) is refused, so a crafted card cannot make a plugin read files elsewhere."""
    root = Path(checkpoint).resolve()
    folder = (root / relative).resolve()
    if not folder.is_relative_to(root) or not folder.is_dir():
        raise CheckpointError(f"the model card names a file folder that is not inside the checkpoint: {relative!r}")
    return folder


def restore_modalities(path: str | Path, card: ModelCard) -> dict[str, Modality]:
    """Rebuild each modality plugin with its saved options, the files the checkpoint carries for it (``files/``)
    and its learned preprocessing state."""
    saved = json.loads((Path(path) / PREPROCESS_FILE).read_text())["modalities"]
    modalities = build_modalities(card.modalities)
    unknown = sorted(set(card.files) - set(modalities))
    if unknown:
        raise CheckpointError(f"the model card lists files for modalities it does not have: {', '.join(unknown)}")
    for name, plugin in modalities.items():
        if name not in saved:
            raise CheckpointError(f"{PREPROCESS_FILE} has no preprocessing state for modality {name!r}")
        if name in card.files:
            plugin.attach_files(checkpoint_folder(path, card.files[name]))
        plugin.load_preprocess_state(saved[name])
    return modalities


def split_weights(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A checkpoint's weights -> (model state dict, loss state dict), without their "model." / "loss." prefixes."""
    model_state = {key[len("model.") :]: value for key, value in state.items() if key.startswith("model.")}
    loss_state = {key[len("loss.") :]: value for key, value in state.items() if key.startswith("loss.")}
    return model_state, loss_state


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(model state dict, loss state dict) of a checkpoint directory."""
    try:
        return split_weights(load_file(str(Path(path) / MODEL_FILE)))
    except Exception as error:  # safetensors raises its own error types for corrupt files
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"{MODEL_FILE} is not a readable safetensors file ({type(error).__name__})") from None


def load_weights(path: str | Path, model: torch.nn.Module, criterion: torch.nn.Module | None = None) -> None:
    """Load "model." (and "loss.") weights strictly: a missing or unexpected tensor is an error."""
    model_state, loss_state = read_weights(path)
    getattr(model, "module", model).load_state_dict(model_state, strict=True)
    if criterion is not None:
        criterion.load_state_dict(loss_state, strict=True)


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    allow_download: bool = False,
    revision: str | None = None,
) -> ContrastiveModel:
    """Load a checkpoint for inference: the model in eval mode, with ``model.preprocess`` (the preprocessing it was
    trained with) and ``model.card`` (its model card).

    Args:
        path: a checkpoint folder; with ``allow_download``, also a Hugging Face hub repository id.
        device: where the weights go.
        allow_download: resolve a hub id with ``huggingface_hub`` (never by default; see ``medclip.hub``).
        revision: the hub branch, tag or commit when downloading.
    """
    path = check_checkpoint_path(resolve_checkpoint(path, allow_download, revision))
    card = read_card(path)
    if card.training.get(ENCODER_ONLY):
        raise CheckpointError(
            f"{path.name} holds a pre-stage encoder (`medclip {card.training.get('recipe', '?')}`), not an embedding "
            "model: it has no projection head and no second modality. Start a pretraining run from it with "
            f"train.init_from={path.name} (docs/warm_start.md), then load that run's checkpoint"
        )
    model = build_model(card.model, restore_modalities(path, card))
    load_weights(path, model)
    model.card = card
    return model.to(device).eval()
