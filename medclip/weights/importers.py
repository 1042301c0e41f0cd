"""The registry of weight importers behind ``medclip convert-weights SOURCE DEST --from FORMAT --to MODALITY``.

An importer reads a foreign release (open_clip, timm, MONAI, MedicalNet, a Hugging Face text model) and maps its keys
onto the part of a medclip encoder that can hold them: a key mapping checked tensor by tensor, never a loose state
dict load. Each importer converts one or more *parts* (``timm_backbone``, ``clip_text``, ``resnet3d``); each modality
plugin says where a part sits in its encoder (``Modality.weight_slots``: the wsi plugin holds a ``timm_backbone`` at
``patch_encoder.model``), so ``--to`` picks the part and the key prefix, and a new plugin with a timm backbone takes
the same files without a new importer.

The output is one safetensors file whose keys are the encoder's own, with metadata (``medclip.weights.files``): the
sub-module it fills, the modality options it needs (printed for the user to copy), the input normalisation or the
tokenizer the weights were trained with. A modality's ``weights:`` option loads it strictly. Nothing is downloaded
and nothing is unpickled except through ``torch.load(weights_only=True)`` after ``--trust-pickle``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..atomic import write_atomic
from ..registry import Registry
from .files import MODALITY, PIXEL_MEAN, PIXEL_STD, SAFETENSORS_SUFFIX, SCOPE, SETTINGS, SOURCE, open_weights
from .foreign import import_torch_weights
from .strict import WeightsError

# Stands for "the option that names this plugin's timm backbone" in a converter's settings; ``convert_foreign`` writes
# the target plugin's own name for it (``Modality.backbone_option``: wsi ``patch_encoder``, image ``encoder``).
BACKBONE_SETTING = "<backbone>"


@dataclass
class ImportOptions:
    """Command-line options of ``convert-weights`` that importers read (each uses the ones it documents).

    Attributes:
        trust_pickle: allow a pickle-based source (read with ``torch.load(weights_only=True)`` only).
        arch: the target architecture when it cannot be read off the weights: a timm model name (``--from timm``;
            open_clip towers built on timm), or to override the inferred one.
        quickgelu: the weights were trained with QuickGELU (OpenAI's original CLIP, open_clip's ``*-quickgelu``).
        in_channels: input channels of the target 3-D encoder (CT: one per HU window); the first convolution of a
            1-channel release is spread over them.
        vocab: CLIP's merges file (``bpe_simple_vocab_16e6.txt.gz``); default: the installed open_clip package's.
        heads: attention heads of a CLIP text tower (default: width / 64, open_clip's rule).
        pixel_mean: the normalisation the weights were trained with, when the importer's default is wrong.
        pixel_std: likewise.
    """

    trust_pickle: bool = False
    arch: str = ""
    quickgelu: bool = False
    in_channels: int = 0
    vocab: str = ""
    heads: int = 0
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None


@dataclass
class Converted:
    """One part converted: tensors under the part's own keys, and what the user and loader need to know."""

    tensors: dict[str, Tensor]
    settings: dict[str, Any]  # modality options the weights need, e.g. {BACKBONE_SETTING: "resnet50_clip"}
    metadata: dict[str, str] = field(default_factory=dict)  # pixel statistics, tokenizer JSON
    notes: list[str] = field(default_factory=list)  # what was dropped or adapted, in words


@dataclass
class ConversionResult:
    """What ``convert_foreign`` wrote."""

    destination: Path
    tensors: int
    modality: str
    scope: str
    settings: dict[str, Any]
    notes: list[str]


PartConverter = Callable[[dict[str, Tensor], ImportOptions], Converted]


@dataclass(frozen=True)
class Importer:
    """One source format.

    Attributes:
        name: the ``--from`` value.
        description: one line for ``--help``.
        parts: part kind -> converter of a flat state dict (wrappers already removed).
        convert_folder: for importers whose output is a folder rather than a weights file (``hf_text``):
            ``(source, destination, options) -> ConversionResult``.
    """

    name: str
    description: str
    parts: Mapping[str, PartConverter] = field(default_factory=dict)
    convert_folder: Callable[[Path, Path, ImportOptions], ConversionResult] | None = None


IMPORTERS: Registry[Importer] = Registry("weights importer")


def read_state(source: str | Path, trust_pickle: bool) -> dict[str, Tensor]:
    """A release's tensors as one flat dict: a ``.safetensors`` file, a folder of them, or (trusted) a PyTorch pickle.

    ``module.`` (DistributedDataParallel's prefix) is taken off when every key has it.
    """
    path = Path(source).expanduser()
    state = open_weights(path, "source").tensors() if path.is_dir() else import_torch_weights(path, trust_pickle)
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def _plugin_class(modality: str) -> type:
    from .. import MODALITIES  # lazy: the plugins import torch models

    return MODALITIES.get(modality)


def _slot(importer: Importer, modality: str) -> tuple[str, str]:
    from .. import MODALITIES

    slots = _plugin_class(modality).weight_slots
    parts = [part for part in importer.parts if part in slots]
    if not parts:
        takers = sorted(name for name, cls in MODALITIES.items() if set(cls.weight_slots) & set(importer.parts))
        raise WeightsError(
            f"--to {modality}: the {modality} encoder holds none of what --from {importer.name} converts "
            f"({', '.join(importer.parts)}); modalities that do: {', '.join(takers) or 'none'}"
        )
    if len(parts) > 1:
        raise WeightsError(f"--to {modality}: ambiguous, the encoder holds several parts ({', '.join(parts)})")
    return parts[0], slots[parts[0]]


def convert_foreign(
    source: str | Path, destination: str | Path, importer: str, modality: str = "", options: ImportOptions | None = None
) -> ConversionResult:
    """Convert ``source`` with the importer ``importer`` into a weights file for ``modality`` (module docstring).

    Raises:
        WeightsError: an unknown importer or modality, a modality without a place for the importer's part, a refused
            or unreadable source, weights that do not fit the target architecture (naming the keys).
    """
    register_builtin_importers()
    options = options or ImportOptions()
    chosen = IMPORTERS.get(importer)
    destination = Path(destination)
    if chosen.convert_folder is not None:
        if modality not in ("", "report"):  # a Hugging Face text model folder is the report's hf_model
            raise WeightsError(f"--from {importer} writes a model folder for the report modality, not for {modality}")
        return chosen.convert_folder(Path(source), destination, options)
    if not modality:
        raise WeightsError(f"--from {importer} needs --to MODALITY: the modality whose encoder takes the weights")
    if destination.suffix.lower() != SAFETENSORS_SUFFIX:
        raise WeightsError(f"{destination.name}: the converted file must end in {SAFETENSORS_SUFFIX}")
    part, scope = _slot(chosen, modality)
    converted = chosen.parts[part](read_state(source, options.trust_pickle), options)
    if options.pixel_mean is not None or options.pixel_std is not None:
        if options.pixel_mean is None or options.pixel_std is None or len(options.pixel_mean) != 3:
            raise WeightsError("--pixel-mean and --pixel-std go together, three values each")
        converted.metadata[PIXEL_MEAN] = json.dumps([float(v) for v in options.pixel_mean])
        converted.metadata[PIXEL_STD] = json.dumps([float(v) for v in options.pixel_std])
    backbone_option = _plugin_class(modality).backbone_option  # the plugin's name for its timm backbone option
    converted.settings = {
        (backbone_option if key == BACKBONE_SETTING else key): value for key, value in converted.settings.items()
    }
    tensors = {
        (f"{scope}.{key}" if scope else key): value.contiguous().clone() for key, value in converted.tensors.items()
    }
    metadata = {
        "format": "pt",
        SOURCE: importer,
        MODALITY: modality,
        SCOPE: scope,
        SETTINGS: json.dumps(converted.settings),
        **converted.metadata,
    }
    from safetensors.torch import save_file

    write_atomic(destination, lambda temp: save_file(tensors, str(temp), metadata))
    return ConversionResult(destination, len(tensors), modality, scope, converted.settings, converted.notes)


def register_builtin_importers() -> None:
    """The importers medclip ships (imported here so ``medclip.weights`` stays light until conversion is asked for)."""
    from .hf_text import HF_TEXT
    from .open_clip import OPEN_CLIP
    from .resnet3d import MEDICALNET, MONAI_RESNET
    from .timm_backbone import TIMM

    for item in (OPEN_CLIP, TIMM, MONAI_RESNET, MEDICALNET, HF_TEXT):
        if item.name not in IMPORTERS:
            IMPORTERS.register(item.name, item)
