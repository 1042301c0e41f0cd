"""``Preprocess``: the preprocessing that belongs to a model's weights, for every modality it embeds.

A model is only as good as the match between its inputs and its training inputs, so the plugins a model was trained
with travel with it (restored from the checkpoint's ``preprocess.json``: tokenizer, gene vocabulary, spacing, HU
windows, sampling rate, ...). ``model.preprocess`` prepares new inputs exactly as training's were, and refuses inputs
its preprocessing cannot serve (each plugin's ``check_compatible``: a cache written with other settings, another
sampling rate or MPP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .types import Modality, Sample


class Preprocess:
    """The evaluation-time transforms and collate of every modality of a model.

    Args:
        modalities: name -> fitted modality plugin (its ``config`` and learned preprocessing state restored).
    """

    def __init__(self, modalities: Mapping[str, Modality]) -> None:
        self.modalities = dict(modalities)
        self._transforms: dict[str, Any] | None = None

    @property
    def transforms(self) -> dict[str, Any]:
        """Each modality's evaluation transform, built on first use (plugins that fit on data must be fitted first)."""
        if self._transforms is None:
            self._transforms = {name: plugin.transforms(train=False) for name, plugin in self.modalities.items()}
        return self._transforms

    def load(self, name: str, ref: Any) -> Sample:
        """Read one input with the plugin's loader (a path, a series folder, inline text, ``file.h5ad#row=3``).

        Raises:
            ModalityError: the input cannot be read, or its preprocessing disagrees with the model's.
        """
        plugin = self.modalities[name]
        sample = plugin.load(ref)
        plugin.check_compatible(sample.get(f"{name}_meta", {}))
        return sample

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
