"""``--from timm``: a timm checkpoint onto the timm backbone an encoder builds (``timm_backbone`` part).

timm knows how to read its own releases: each model module's ``checkpoint_filter_fn`` converts older layouts (and
foreign ones such as OpenAI-CLIP ViTs and ResNets) to the model's keys. The importer builds the target backbone with
``num_classes=0`` on the ``meta`` device (shapes only, no memory, nothing downloaded), runs the filter, drops the
classifier (the encoder has none) and checks every tensor against the backbone. The normalisation written into the
file is the backbone's own (``pretrained_cfg`` of the name, tag included), which the wsi plugin then uses.
"""

from __future__ import annotations

import difflib
import json
import sys

import torch
from torch import Tensor, nn

from ..registry import lazy_import
from .files import PIXEL_MEAN, PIXEL_STD
from .importers import BACKBONE_SETTING, Converted, Importer, ImportOptions
from .strict import WeightsError, check_tensors, require_fit


def meta_backbone(name: str) -> nn.Module:
    """The timm model ``name`` without classifier, on the meta device (its state dict has shapes, no storage)."""
    timm = lazy_import("timm", "timm weight conversion")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise WeightsError(f"unknown timm model {name!r}; close names: {', '.join(close) or 'none'}")
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=0)


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The classifier modules a timm release may hold and a ``num_classes=0`` backbone lacks (``head``, ``fc``, ...)."""
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{name}." for name in names if name) + ("head.", "fc.", "classifier.", "head.fc.")


def filter_checkpoint(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Run the model module's own ``checkpoint_filter_fn`` (timm's knowledge of its and foreign layouts), if any."""
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    return dict(filter_fn(state, model)) if filter_fn is not None else dict(state)


def fit_backbone(state: dict[str, Tensor], model: nn.Module, what: str) -> tuple[dict[str, Tensor], list[str]]:
    """``state`` (already in timm's layout) checked against the backbone; classifier tensors are taken off.

    Returns:
        (tensors that fill the backbone exactly, the classifier keys dropped).

    Raises:
        WeightsError: missing, unexpected or shape-mismatched tensors, by name.
    """
    expected = model.state_dict()
    prefixes = classifier_prefixes(model)
    dropped = sorted(key for key in state if key not in expected and key.startswith(prefixes))
    kept = {key: value for key, value in state.items() if key not in dropped}
    require_fit(check_tensors(expected, kept), what)
    return kept, dropped


def normalisation_metadata(model: nn.Module) -> dict[str, str]:
    """The backbone's pixel statistics as file metadata (none when timm has none for it)."""
    config = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = config.get("mean"), config.get("std")
    if mean is None or std is None or len(mean) != 3:
        return {}
    return {PIXEL_MEAN: json.dumps([float(v) for v in mean]), PIXEL_STD: json.dumps([float(v) for v in std])}


def convert_timm(state: dict[str, Tensor], options: ImportOptions) -> Converted:
    if not options.arch:
        raise WeightsError(
            "--from timm needs --arch NAME: the timm model the checkpoint belongs to, with its release tag when the "
            "normalisation matters (e.g. vit_base_patch16_224.augreg_in21k)"
        )
    model = meta_backbone(options.arch)
    tensors, dropped = fit_backbone(filter_checkpoint(state, model), model, f"timm weights for {options.arch}")
    notes = [f"dropped the classifier ({len(dropped)} tensors): the encoder has none"] if dropped else []
    return Converted(tensors, {BACKBONE_SETTING: options.arch}, normalisation_metadata(model), notes)


TIMM = Importer(
    name="timm",
    description="a timm checkpoint (--arch NAME) onto a timm backbone (wsi patch encoder)",
    parts={"timm_backbone": convert_timm},
)
