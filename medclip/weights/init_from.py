"""``train.init_from``: start a new run's towers from a medclip checkpoint (any subset of its towers).

A tower is an encoder with its projection head. The source is a medclip checkpoint directory: a finished pretraining
run, or a masked-modelling pre-stage whose ``model.safetensors`` holds ``model.encoders.<modality>.*`` (and maybe no
heads). For each selected tower:

- the encoder is loaded strictly (every tensor, its shape, nothing extra);
- the head too when the checkpoint has one (``train.init_heads``); a checkpoint without heads keeps the new ones;
- the learned preprocessing the weights index (a report tokenizer's vocabulary, a gene vocabulary) is restored from
  the checkpoint's ``preprocess.json`` instead of being fitted again: token-embedding rows mean nothing under another
  vocabulary. The other options stay the new config's.

``train.init_logit_scale`` also takes the learned temperature. Every tower is checked before any is assigned.
Applied before the Trainer is built, never on resume (the run's own checkpoint wins).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    PICKLE_SUFFIXES,
    PREPROCESS_FILE,
    checkpoint_folder,
    read_card,
    read_weights,
)
from ..model import ContrastiveModel
from ..types import Modality
from .strict import WeightsError, assign, check_tensors

log = logging.getLogger("medclip.weights")
LOGIT_SCALE = "log_logit_scale"


@dataclass
class InitSource:
    """An opened ``train.init_from`` checkpoint and the towers taken from it."""

    path: Path
    towers: list[str]
    model_state: dict[str, Tensor]


def checkpoint_towers(model_state: Mapping[str, Tensor]) -> list[str]:
    """The modalities whose encoders a checkpoint's model state holds (``encoders.<modality>.*``)."""
    return sorted({key.split(".")[1] for key in model_state if key.startswith("encoders.") and key.count(".") >= 2})


def open_init_source(path: str | Path, configured: Collection[str], requested: Sequence[str]) -> InitSource:
    """Check ``train.init_from`` and pick its towers.

    Args:
        path: a medclip checkpoint directory (needs ``model.safetensors``).
        configured: the modalities of the new run.
        requested: ``train.init_modalities``; empty = every modality the checkpoint and the run share.

    Raises:
        WeightsError: a pickle file or anything but a checkpoint directory, no shared modality, or a requested one
            that the checkpoint or the run lacks.
    """
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        raise WeightsError(
            f"train.init_from: {path.name} is a pickle-based file; medclip never unpickles weights. init_from takes a "
            "medclip checkpoint directory; foreign weights are converted once with `medclip convert-weights SOURCE "
            "DEST.safetensors --from FORMAT --to MODALITY` and named by the modality's weights: option."
        )
    if not path.is_dir() or not (path / MODEL_FILE).is_file():
        raise WeightsError(f"train.init_from: not a medclip checkpoint directory (with {MODEL_FILE}): {path.name}")
    model_state, _ = read_weights(path)
    available = checkpoint_towers(model_state)
    if requested:
        unknown = [name for name in requested if name not in available]
        if unknown:
            raise WeightsError(
                f"train.init_modalities: the checkpoint has no {', '.join(unknown)} encoder; it has "
                f"{', '.join(available) or 'none'}"
            )
        absent = [name for name in requested if name not in configured]
        if absent:
            raise WeightsError(f"train.init_modalities: {', '.join(absent)} is not a modality of this run")
        towers = list(dict.fromkeys(requested))
    else:
        towers = [name for name in available if name in configured]
        if not towers:
            raise WeightsError(
                f"train.init_from: the checkpoint's modalities ({', '.join(available) or 'none'}) and this run's "
                f"({', '.join(sorted(configured))}) share none"
            )
    return InitSource(path, towers, model_state)


def restore_learned_preprocessing(source: InitSource, modalities: Mapping[str, Modality]) -> list[str]:
    """Give each selected tower whose plugin learns preprocessing from data the checkpoint's learned state.

    Returns:
        The towers restored this way (they must not be fitted again).

    Raises:
        WeightsError: such a tower has no saved state in the checkpoint (its weights index an unknown vocabulary).
    """
    learned = [name for name in source.towers if modalities[name].fits_on_data]
    if not learned:
        return []
    state_file = source.path / PREPROCESS_FILE
    saved = json.loads(state_file.read_text())["modalities"] if state_file.is_file() else {}
    files = read_card(source.path).files if (source.path / CONFIG_FILE).is_file() else {}
    for name in learned:
        if name not in saved:
            raise WeightsError(
                f"train.init_from: the checkpoint has no preprocessing state for {name}, whose weights index a "
                "vocabulary learned from data; a tower cannot be taken without it"
            )
        if name in files:
            modalities[name].attach_files(checkpoint_folder(source.path, files[name]))
        try:
            modalities[name].load_preprocess_state(saved[name])
        except (ValueError, KeyError, TypeError) as error:
            raise WeightsError(f"train.init_from: the {name} preprocessing state cannot be restored: {error}") from None
    return learned


def init_from_checkpoint(
    model: ContrastiveModel, source: InitSource, heads: bool = True, logit_scale: bool = False
) -> dict[str, Any]:
    """Load the selected towers of ``source`` into ``model``, all or nothing.

    Returns:
        What was loaded, for the model card: the checkpoint's fingerprint, and per tower the encoder tensor count
        and whether the head came along.

    Raises:
        WeightsError: a tower does not fit (every problem of every tower is named; nothing is loaded).
    """
    state = source.model_state
    planned: list[tuple[Any, dict[str, Tensor]]] = []
    problems = []
    report: dict[str, Any] = {"towers": {}}
    for name in source.towers:
        parts = [("encoder", model.encoders[name], f"encoders.{name}.")]
        head_prefix = f"heads.{name}."
        has_head = any(key.startswith(head_prefix) for key in state)
        if heads and has_head:
            parts.append(("head", model.heads[name], head_prefix))
        head = (
            "loaded"
            if heads and has_head
            else "kept new " + ("(the checkpoint has none)" if heads else "(train.init_heads=false)")
        )
        report["towers"][name] = {"encoder_tensors": sum(key.startswith(parts[0][2]) for key in state), "head": head}
        for part, module, prefix in parts:
            found = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            check = check_tensors(module.state_dict(), found)
            if check.ok:
                planned.append((module, found))
            else:
                hint = " (train.init_heads=false keeps the new heads)" if part == "head" else ""
                problems.append(f"{name} {part}: {check.describe()}{hint}")
    if logit_scale:
        if LOGIT_SCALE not in state:
            problems.append("logit scale: the checkpoint has none (set train.init_logit_scale=false)")
        else:
            report["logit_scale"] = float(state[LOGIT_SCALE].exp())
    if problems:
        raise WeightsError("train.init_from does not fit this model; nothing was loaded:\n  " + "\n  ".join(problems))
    for module, tensors in planned:
        assign(module, tensors)
    if logit_scale:
        model.log_logit_scale.data.copy_(state[LOGIT_SCALE])
    report["model_sha256"] = _sha256(source.path / MODEL_FILE)
    for name, entry in report["towers"].items():
        log.info("init_from: %s encoder (%d tensors), head %s", name, entry["encoder_tensors"], entry["head"])
    return report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
