"""The patch encoder: any timm backbone by name, returning one embedding per patch.

Weights are never downloaded: the model is built with ``pretrained=False`` (random initialisation), and when the user
has weights (a pathology foundation model, an ImageNet checkpoint) they pass a local ``.safetensors`` file, loaded
without unpickling. The classifier head is removed (``num_classes=0``), so the output is the pooled feature vector.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from torch import Tensor, nn

from medclip.registry import lazy_import


def create_timm_backbone(name: str) -> nn.Module:
    """A randomly initialised timm model without classifier; unknown names raise with the closest timm names."""
    timm = lazy_import("timm", "the wsi patch encoder")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise ValueError(
            f"unknown timm model {name!r} for wsi.patch_encoder; close names: {', '.join(close) or 'none'}"
        )
    return timm.create_model(name, pretrained=False, num_classes=0)


def load_local_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a local ``.safetensors`` file into the timm ``model`` strictly (classifier weights in the file are ignored).

    The file holds the backbone's own keys (a timm release), or is a file ``medclip convert-weights --to wsi`` wrote
    (keys under ``patch_encoder.model.``, which are taken off).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not a .safetensors file, or its tensors do not fit the model (the error names the keys).
    """
    from medclip.weights.files import SCOPE, open_weights
    from medclip.weights.strict import assign, check_tensors, require_fit

    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        raise ValueError("wsi patch weights must be a .safetensors file (pickled checkpoints are never loaded)")
    if not path.is_file():
        raise FileNotFoundError(f"wsi patch weights file not found: {path}")
    source = open_weights(path, "wsi patch_weights")
    state = source.tensors()
    prefix = f"{source.metadata[SCOPE]}." if source.metadata.get(SCOPE) else ""
    state = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or ""
    for head in (classifier,) if isinstance(classifier, str) else tuple(classifier):
        if head:
            state = {key: value for key, value in state.items() if not key.startswith(f"{head}.")}
    require_fit(check_tensors(model.state_dict(), state), "wsi patch weights")
    assign(model, state)


class TimmPatchEncoder(nn.Module):
    """(P, 3, S, S) normalised patches -> (P, F) embeddings.

    Args:
        name: a timm model name (``timm.list_models()``).
        weights: a local ``.safetensors`` file, or "" for random initialisation.
        frozen: keep the weights fixed and the normalisation statistics in eval mode (a pretrained backbone).
    """

    def __init__(self, name: str, weights: str = "", frozen: bool = False) -> None:
        super().__init__()
        self.model = create_timm_backbone(name)
        if weights:
            load_local_weights(self.model, weights)
        # Models with a pre-logits layer (MobileNetV3, ...) output head_hidden_size features, not num_features.
        self.output_dim = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        self.frozen = frozen
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> TimmPatchEncoder:
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its BatchNorm statistics
            self.model.eval()
        return self

    def forward(self, pixels: Tensor) -> Tensor:
        return self.model(pixels)  # (P, F)
