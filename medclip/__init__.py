"""medclip: align medical and scientific modalities in one embedding space with contrastive learning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .registry import Registry, RegistryError

if TYPE_CHECKING:
    from .types import EncoderOutput, Modality, ModalityConfig, ModalityError, Sample

__version__ = "0.1.0"

# The plugin-seam types live in ``medclip.types``, which imports torch. They are resolved on first access (PEP 562),
# so that ``import medclip`` (and with it ``medclip --help``) does not pay torch's import time.
_LAZY_TYPES = ("EncoderOutput", "Modality", "ModalityConfig", "ModalityError", "Sample")


def __getattr__(name: str) -> Any:
    if name in _LAZY_TYPES:
        from . import types

        return getattr(types, name)
    raise AttributeError(f"module 'medclip' has no attribute {name!r}")


# Modality plugins register through the "medclip.modalities" entry-point group; the built-ins in `modalities/` do
# so from pyproject.toml, exactly as a third-party package would.
MODALITIES: Registry[type[Modality]] = Registry("modality", "medclip.modalities")


def register_modality(name: str):
    """Class decorator registering a modality plugin in code (entry points are the packaged way)."""

    def add(cls: type[Modality]) -> type[Modality]:
        cls.name = cls.name or name
        return MODALITIES.register(name, cls)

    return add


def list_modalities(pattern: str | None = None) -> list[str]:
    """Names of every registered modality (built-in and third-party), or those matching ``pattern`` (``"c*"``)."""
    return MODALITIES.names(pattern)


def get_modality(name: str, config: ModalityConfig | dict | None = None) -> Modality:
    """A fresh instance of the modality plugin ``name``, configured from a config object or a plain dict."""
    from .config import build

    cls = MODALITIES.get(name)
    if isinstance(config, dict) or config is None:
        config = build(cls.config_class, config or {}, _path=f"modalities.{name}")
    return cls(config)


def load_model(path, device: str = "cpu", allow_download: bool = False, revision: str | None = None):
    """Load a checkpoint directory for inference: the model (eval mode) with ``model.preprocess`` (the preprocessing
    it was trained with) and ``model.card`` (its model card). A Hugging Face hub id is resolved only with
    ``allow_download=True``. See ``medclip.checkpoint`` and ``medclip.hub``."""
    from .checkpoint import load_model as _load_model

    return _load_model(path, device=device, allow_download=allow_download, revision=revision)


def create_model(modalities, model=None, device: str = "cpu"):
    """A new model with its preprocessing from modality options and embedding settings (see ``medclip.factory``)."""
    from .factory import create_model as _create_model

    return _create_model(modalities, model, device)


def zero_shot_classifier(model, prompts, findings=(), mode: str = "binary", text_modality: str = "report", **options):
    """A ``ZeroShotClassifier`` (``predict_proba``) for a trained model and a prompt set (a bundled name or a YAML
    path); see ``medclip.eval.zero_shot_classifier``."""
    from .eval.zero_shot_classifier import ZeroShotClassifier

    return ZeroShotClassifier(model, prompts, findings, mode, text_modality, **options)


def retrieval_index(model, manifest, modality: str, split: str = "test", kind: str = "exact", **options):
    """A searchable ``EmbeddingIndex`` of one modality's studies in a manifest split, embedded with ``model`` (see
    ``medclip.eval.retrieval_index``)."""
    from .eval.retrieval_index import retrieval_index as _retrieval_index

    return _retrieval_index(model, manifest, modality, split, kind, **options)


__all__ = [
    "EncoderOutput",
    "Modality",
    "ModalityConfig",
    "ModalityError",
    "Registry",
    "RegistryError",
    "Sample",
    "create_model",
    "get_modality",
    "list_modalities",
    "load_model",
    "register_modality",
    "retrieval_index",
    "zero_shot_classifier",
]
