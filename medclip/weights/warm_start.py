"""Per-modality ``weights:``: a new model's encoders start from local safetensors files, checked strictly.

Applied by the factory when a NEW model is built for training (``build_model(..., apply_weights=True)``), never when
a checkpoint is loaded: the checkpoint's own weights win, and the file need not exist on the machine that loads it.
Every modality's file is checked before any is assigned, so a refused run leaves no encoder half-loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from torch import nn

from ..types import Modality
from .files import SOURCE, WeightsSource, convert_hint, open_weights
from .strict import WeightsError, assign, check_tensors, scoped_state

log = logging.getLogger("medclip.weights")


def weights_sources(modalities: Mapping[str, Modality]) -> dict[str, WeightsSource]:
    """The opened ``weights:`` source of every modality that names one (checked, tensors not read yet)."""
    return {
        name: open_weights(plugin.config.weights, f"modalities.{name}.weights")
        for name, plugin in modalities.items()
        if getattr(plugin.config, "weights", "")
    }


def check_no_overlap(modalities: Mapping[str, Modality], towers: Collection[str]) -> None:
    """A tower taken from ``train.init_from`` must not also name ``weights:``: which one should win is unclear."""
    both = sorted(name for name in towers if getattr(modalities[name].config, "weights", ""))
    if both:
        raise WeightsError(
            f"modalities {', '.join(both)} name weights: and are also taken from train.init_from; drop one "
            "(train.init_modalities picks the towers init_from loads)"
        )


def apply_modality_weights(encoders: Mapping[str, nn.Module], modalities: Mapping[str, Modality]) -> dict[str, Any]:
    """Load every modality's ``weights:`` into its encoder, all or nothing.

    A file written by ``medclip convert-weights`` names the encoder sub-module it fills (``medclip.scope``, e.g.
    the WSI patch encoder's timm backbone); every tensor of that sub-module must be in the file with its shape and
    the file must hold nothing else. A file without a scope must fit the whole encoder.

    Args:
        encoders: modality name -> the new model's encoder.
        modalities: the configured plugins (their ``config.weights``).

    Returns:
        modality -> what was loaded (file name, fingerprint, tensor count, scope, importer), for the model card.

    Raises:
        WeightsError: a file is missing, pickle-based or unreadable, or its tensors do not fit (every problem of
            every modality is listed; nothing is loaded).
    """
    sources = weights_sources(modalities)
    planned: dict[str, dict] = {}
    problems = []
    for name, source in sources.items():
        tensors = source.tensors()
        expected = scoped_state(encoders[name], source.scope)
        if source.scope and not expected:
            problems.append(
                f"modalities.{name}.weights ({source.name}): the file fills `{source.scope}`, which this {name} "
                "encoder does not have (check the modality's options, e.g. its encoder or source)"
            )
            continue
        check = check_tensors(expected, tensors)
        if not check.ok:
            hint = "" if SOURCE in source.metadata else convert_hint(name)
            where = f" into `{source.scope}`" if source.scope else ""
            problems.append(f"modalities.{name}.weights ({source.name}{where}): {check.describe()}.{hint}")
            continue
        planned[name] = tensors
    if problems:
        raise WeightsError("weights do not fit their encoders; nothing was loaded:\n  " + "\n  ".join(problems))
    report = {}
    for name, tensors in planned.items():
        source = sources[name]
        assign(encoders[name], tensors)
        report[name] = {
            "file": source.name,
            "sha256": source.sha256(),
            "tensors": len(tensors),
            "scope": source.scope or "encoder",
            "source": source.metadata.get(SOURCE, "safetensors"),
        }
        log.info(
            "%s encoder: %d tensors loaded from %s into %s",
            name,
            len(tensors),
            source.name,
            f"`{source.scope}`" if source.scope else "the whole encoder",
        )
    return report
