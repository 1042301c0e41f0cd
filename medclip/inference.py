"""Using a trained model: the preprocessing that belongs to its weights, and batched embedding.

``medclip.load_model(path)`` returns ``(model, preprocess)``. ``preprocess`` holds each modality plugin restored
with the exact preprocessing state it was trained with (tokenizer, gene vocabulary, spacing, ...), so new inputs are
prepared exactly as training inputs were (open_clip's ``create_model_and_transforms`` idea).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .types import Modality, Sample


def move_to_device(value: Any, device: torch.device | str) -> Any:
    """Move tensors (also inside dicts and lists) to ``device``; other values pass through."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: move_to_device(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [move_to_device(item, device) for item in value]
    return value


class Preprocess:
    """The evaluation-time transforms and collate of every modality of a model.

    Args:
        modalities: name -> fitted modality plugin (its ``config`` and learned preprocessing state restored).
    """

    def __init__(self, modalities: Mapping[str, Modality]) -> None:
        self.modalities = dict(modalities)
        self.transforms = {
            name: plugin.transforms(plugin.config, train=False) for name, plugin in self.modalities.items()
        }

    def load(self, name: str, ref: Any) -> Sample:
        """Read one input with the plugin's loader (a path, a series folder, inline text, ``file.h5ad#row=3``)."""
        return self.modalities[name].load(ref)

    def transform(self, sample: Sample) -> Sample:
        for transform in self.transforms.values():
            sample = transform(sample)
        return sample

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        for plugin in self.modalities.values():
            batch.update(plugin.collate(samples))
        return batch

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Loaded samples -> a model-ready batch."""
        return self.collate([self.transform(dict(sample)) for sample in samples])


@torch.no_grad()
def embed(
    model: torch.nn.Module,
    preprocess: Preprocess,
    name: str,
    inputs: Iterable[Any],
    batch_size: int = 64,
    loaded: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """Embed inputs of one modality: references (or loaded samples with ``loaded=True``) -> (N, D) normalised.

    Args:
        model: a ``ContrastiveModel``.
        preprocess: the model's ``Preprocess``.
        name: the modality of every input.
        inputs: references for ``preprocess.load`` (paths, inline text, ...), or samples when ``loaded``.
        batch_size: inputs per forward pass.
        loaded: whether ``inputs`` are already loaded samples.
        device: where to run; defaults to the model's device.
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    chunks: list[Tensor] = []
    pending: list[Sample] = []

    def flush() -> None:
        batch = move_to_device(preprocess(pending), device)
        chunks.append(model.encode(name, batch[name]).float().cpu())  # (b, D)
        pending.clear()

    for item in inputs:
        pending.append(item if loaded else preprocess.load(name, item))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    model.train(was_training)
    if not chunks:
        raise ValueError(f"nothing to embed for modality {name!r}")
    return torch.cat(chunks)  # (N, D)
