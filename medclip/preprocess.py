"""``Preprocess``: the preprocessing that belongs to a model's weights, for every modality it embeds.

A model is only as good as the match between its inputs and its training inputs, so the plugins a model was trained
with travel with it (restored from the checkpoint's ``preprocess.json``: tokenizer, gene vocabulary, spacing, HU
windows, sampling rate, ...). ``model.preprocess`` prepares new inputs exactly as training's were, and refuses inputs
its preprocessing cannot serve (each plugin's ``check_compatible``: a cache written with other settings, another
sampling rate or MPP).

``model.preprocess["ct"]`` is one modality's preprocessing (``ModalityPreprocess``: references -> that modality's
batch, nothing collated for the others); ``model.preprocess.tokenizer`` (also ``model.tokenizer``) is the one of the
model's text modality, so ``model.encode("report", model.tokenizer(["No effusion."]))`` embeds texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .types import Modality, Sample


class ModalityPreprocess:
    """One modality's evaluation-time preprocessing: references (or loaded samples) -> that modality's batch.

    Args:
        plugin: the fitted modality plugin.
        transform: its evaluation transform (shared with the model's ``Preprocess``).
    """

    def __init__(self, plugin: Modality, transform: Any) -> None:
        self.plugin = plugin
        self.name = plugin.name
        self._transform = transform

    @property
    def config(self) -> Any:
        """The plugin's options (spacing, HU window, sampling rate, tokenizer settings, ...)."""
        return self.plugin.config

    def state(self) -> dict[str, Any]:
        """The preprocessing fingerprint and learned state saved in the checkpoint's ``preprocess.json``."""
        return self.plugin.preprocess_state()

    def load(self, ref: Any) -> Sample:
        """Read one input and check it against the model's preprocessing (see ``Preprocess.load``)."""
        sample = self.plugin.load(ref)
        self.plugin.check_compatible(sample.get(f"{self.name}_meta", {}))
        return sample

    def transform(self, sample: Sample) -> Sample:
        return self._transform(sample)

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Transformed samples -> ``{name: input, f"{name}_mask": (B,) bool}``."""
        return self.plugin.collate(samples)

    def __call__(self, inputs: Iterable[Any], loaded: bool = False) -> dict[str, Any]:
        """References (paths, inline text, ``cells.h5ad#row=3``), or loaded samples with ``loaded=True``, -> the
        model-ready batch of this modality, which ``model.encode(name, batch)`` embeds.

        Raises:
            ModalityError: an input cannot be read or disagrees with the model's preprocessing.
        """
        if isinstance(inputs, str):  # one text or path, not an iterable of characters
            inputs = [inputs]
        samples = [dict(item) if loaded else self.load(item) for item in inputs]
        if not samples:
            raise ValueError(f"nothing to preprocess for modality {self.name!r}")
        return self.collate([self.transform(sample) for sample in samples])


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

    def __getitem__(self, name: str) -> ModalityPreprocess:
        """One modality's preprocessing; a name the model does not embed is an error listing those it does."""
        if name not in self.modalities:
            raise KeyError(f"the model has no modality {name!r}; it embeds {sorted(self.modalities)}")
        return ModalityPreprocess(self.modalities[name], self.transforms[name])

    def __contains__(self, name: object) -> bool:
        return name in self.modalities

    def __iter__(self) -> Iterator[str]:
        return iter(self.modalities)

    def __len__(self) -> int:
        return len(self.modalities)

    @property
    def tokenizer(self) -> ModalityPreprocess:
        """The preprocessing of the model's text modality (the plugin whose ``text_input`` is set, e.g. ``report``):
        called on texts, it gives the batch ``model.encode`` takes.

        Raises:
            ValueError: the model has no text modality, or several (then use ``preprocess[name]``). Not an
                AttributeError: ``nn.Module`` would replace its message with "has no attribute".
        """
        text = [name for name, plugin in self.modalities.items() if getattr(plugin, "text_input", False)]
        if len(text) != 1:
            found = f"several ({', '.join(text)}): use model.preprocess[NAME]" if text else "none"
            raise ValueError(f"model.tokenizer needs exactly one text modality; this model has {found}")
        return self[text[0]]

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
