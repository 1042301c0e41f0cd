"""The modality-plugin seam: ``Sample``, ``EncoderOutput`` and the ``Modality`` base class.

See DESIGN.md ("Modality plugin"). A modality is registered under a short name ("report", "expression", "ct", ...)
that is both its registry key and its key in every sample and batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn

from .config import ConfigError

# A sample is a plain dict: {name: array | str | tensor, f"{name}_meta": {allow-listed metadata}} plus, once the
# dataset adds them, "labels" (K,) float with NaN for unknown, "patient_id" and "study_id" (pseudonyms).
Sample = dict[str, Any]
# What a modality's collate puts under batch[name]: a tensor, or a dict of tensors (e.g. input_ids + attention_mask).
EncoderInput = Tensor | dict[str, Tensor]


@dataclass
class EncoderOutput:
    """What every encoder returns.

    Attributes:
        pooled: (B, D) one vector per sample, the input of the projection head.
        tokens: (B, T, D) per-token/region/patch/lead/sentence features for fine-grained losses, or None.
        token_mask: (B, T) bool, True where a token is real (not padding), or None when all are real.
    """

    pooled: Tensor
    tokens: Tensor | None = None
    token_mask: Tensor | None = None


def _encoder_output_children(output: EncoderOutput) -> tuple[list[Tensor | None], None]:
    return [output.pooled, output.tokens, output.token_mask], None


def _encoder_output_keyed_children(output: EncoderOutput) -> tuple[list[tuple[Any, Tensor | None]], None]:
    children = (("pooled", output.pooled), ("tokens", output.tokens), ("token_mask", output.token_mask))
    return [(pytree.GetAttrKey(name), value) for name, value in children], None


# A pytree node, so that torch.export, torch.compile and torch.func see through an encoder's output as they do
# through a tuple (``torch.export.export(encoder, ...)`` fails on an unregistered class).
pytree.register_pytree_node(
    EncoderOutput,
    _encoder_output_children,
    lambda children, context: EncoderOutput(*children),
    serialized_type_name="medclip.types.EncoderOutput",
    flatten_with_keys_fn=_encoder_output_keyed_children,
)


@dataclass
class LoRAConfig:
    """Low-rank adapters on an encoder's linear layers (Hu et al. 2021), the ``lora:`` option of every modality.

    With adapters, every other weight of the encoder is frozen: only the adapters (and the projection head) train.
    See ``medclip.nn.lora`` and docs/finetuning.md.

    Attributes:
        r: rank of the adapters; 4-16 is the usual range (the paper's 4 and 8 match full fine-tuning on GLUE).
        alpha: the update is scaled by alpha / r, so changing r does not change the learning rate that works.
        dropout: dropout on the adapters' input (PEFT's ``lora_dropout``); 0 = none.
        targets: module-name patterns to adapt (``["qkv", "proj", "fc1", "fc2"]``): a pattern matches a module whose
            dotted name is the pattern or ends with ``.pattern``, or, with ``*``/``?``, whose name fits the glob.
            Empty: the encoder's attention and MLP linears (``medclip.nn.lora.default_targets``).
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be >= 1, got {self.r}")
        if not self.alpha > 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if any(not isinstance(target, str) or not target.strip() for target in self.targets):
            raise ConfigError("lora.targets must be non-empty module-name patterns")


@dataclass
class ModalityConfig:
    """Options every modality understands; each plugin subclasses this with its own fields.

    Attributes:
        encoder: name of the encoder architecture inside the plugin (e.g. "transformer", "mlp").
        width: hidden size of the encoder; its pooled output has this many features.
        max_decoded_mb: the most memory one input may take once decoded (checked from its header before decoding
            or resampling, see ``medclip.data.safe_io``): a small crafted file must not allocate gigabytes.
        weights: a local ``.safetensors`` file (or a directory of them) the encoder starts from when a NEW model is
            built for training, checked strictly (every tensor present with its shape, nothing extra; nothing is
            loaded unless everything fits). Foreign formats (open_clip, timm, MONAI, MedicalNet) are mapped onto the
            encoder once with ``medclip convert-weights``. Never applied when a checkpoint is loaded: the
            checkpoint's own weights win, and the file need not exist there. See docs/warm_start.md.
        freeze: keep encoder weights fixed during training: true = the whole encoder (LiT's locked tower), or a list
            of module / parameter name prefixes inside the encoder (``["token_embedding", "blocks.layers.0"]``).
            Frozen modules also stay in eval mode (no dropout, no BatchNorm statistics updates). The projection head
            always trains. Applied by the factory (``medclip.nn.tuning``) after any pretrained weights are loaded.
        lora: low-rank adapters on the encoder (``LoRAConfig``); None = none.
    """

    encoder: str = "default"
    width: int = 256
    max_decoded_mb: float = 2048.0
    weights: str = ""
    freeze: bool | list[str] = False
    lora: LoRAConfig | None = None


class ModalityError(ValueError):
    """A per-input problem (missing file, unreadable file, empty report, ...).

    The message must name the reason, and never patient data. ``reason`` is a short machine-readable code used to
    count skipped rows in run summaries (e.g. "missing_file", "unreadable", "empty_report").
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"[{reason}] {message}")
        self.reason = reason


class Modality:
    """Base class of modality plugins.

    Subclasses set ``name`` and ``config_class`` and implement the five methods of DESIGN.md. Plugins that learn
    preprocessing state from training data (a tokenizer vocabulary, a gene vocabulary) set ``fits_on_data = True`` and
    implement ``fit``; that state travels with checkpoints through ``preprocess_state`` (JSON-serialisable, saved in
    ``preprocess.json``) and ``load_preprocess_state``.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ModalityConfig]] = ModalityConfig
    fits_on_data: ClassVar[bool] = False
    # File name endings this plugin reads, so `medclip inspect PATH` can pick the plugin without being told.
    file_suffixes: ClassVar[tuple[str, ...]] = ()
    # A folder can be one input (a DICOM series): `medclip inspect FOLDER` then offers this plugin.
    reads_directories: ClassVar[bool] = False
    # One file holds the inputs of many patients (an .h5ad of cells): references name a part of it (a row), and the
    # check for one file under two patient ids compares those parts, not the file.
    files_hold_many_patients: ClassVar[bool] = False
    # Inputs are free text: ``model.tokenizer`` (this plugin's preprocessing) turns texts into its batch input.
    text_input: ClassVar[bool] = False
    # Axes of ``batch[name]`` beyond the batch whose size varies from batch to batch (a report's token count), by
    # input key (or the modality's name for a tensor input) -> {axis: dimension name}; exported towers keep them
    # dynamic (medclip.export also detects axes that vary across the plugin's synthetic samples).
    export_dynamic_axes: ClassVar[Mapping[str, Mapping[int, str]]] = {}
    # Where foreign encoder parts fit inside this plugin's encoder: part kind -> module path ("" = the whole encoder).
    # `medclip convert-weights --to NAME` writes an importer's output under that path (see medclip/weights/).
    weight_slots: ClassVar[Mapping[str, str]] = {}
    # The option of this plugin's config that names its timm backbone (the setting a converted ``timm_backbone`` file
    # tells the user to copy; medclip.weights.importers.BACKBONE_SETTING stands for it in the importers).
    backbone_option: ClassVar[str] = "encoder"

    def __init__(self, config: ModalityConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    # --- manifest cell -> reference ---------------------------------------------------------------------------------
    def resolve(self, value: str, root: str | os.PathLike) -> str | os.PathLike | Mapping[str, Any]:
        """Turn a manifest cell into what ``load`` takes; by default a path resolved against the manifest root.

        Plugins whose cells are not plain paths override this (inline report text, ``file.h5ad#cell``).
        """
        path = Path(value).expanduser()
        return path if path.is_absolute() else Path(root) / path

    # --- the five methods of DESIGN.md -----------------------------------------------------------------------------
    def load(self, ref: str | os.PathLike | Mapping[str, Any]) -> Sample:
        """Read one input (file, series folder, row, inline text) into ``{name: data, f"{name}_meta": {...}}``.

        Raises:
            ModalityError: with a reason code when the input is missing, unreadable or invalid.
        """
        raise NotImplementedError

    def transforms(self, train: bool) -> Callable[[Sample], Sample]:
        """Return a callable turning a loaded sample into tensors ready for ``collate`` (augmenting when ``train``).

        It must pass samples that miss this modality through unchanged.
        """
        raise NotImplementedError

    def build_encoder(self) -> nn.Module:
        """Return an ``nn.Module`` with an ``output_dim`` attribute mapping ``batch[name]`` to ``EncoderOutput``."""
        raise NotImplementedError

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Stack/pad the transformed samples; always emit ``f"{name}_mask"``: (B,) bool, True where present.

        Samples without this modality get a placeholder row (zeros / padding) and mask False.
        """
        raise NotImplementedError

    def synthetic(self, n: int, seed: int = 0) -> list[Sample]:
        """Return ``n`` tiny, realistically shaped loaded samples (as ``load`` returns them) for tests and demos."""
        raise NotImplementedError

    # --- data-dependent preprocessing state ------------------------------------------------------------------------
    def fit(self, samples: Iterable[Sample]) -> None:
        """Learn preprocessing state from loaded training samples (only called when ``fits_on_data``)."""

    def preprocess_state(self) -> dict[str, Any]:
        """JSON-serialisable preprocessing fingerprint + learned state, saved into the checkpoint."""
        return {"config": asdict(self.config)}

    def load_preprocess_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``preprocess_state`` returned (the config is restored by the caller)."""

    def check_compatible(self, sample_meta: Mapping[str, Any]) -> None:
        """Raise ModalityError if an input's metadata disagrees with this model's preprocessing fingerprint."""

    # --- grounding maps (medclip explain) ---------------------------------------------------------------------------
    def token_layout(self, inputs: EncoderInput, token_count: int) -> Any:
        """Where the encoder's tokens lie in one input: a ``medclip.explain`` layout (``GridLayout``,
        ``SignalLayout``, ``PatchLayout``), or None when they have no position (then ``medclip explain`` refuses the
        modality). Optional: plugins whose tokens are regions of the input override it.

        Args:
            inputs: ``batch[name]`` of a one-row batch (as ``collate`` made it).
            token_count: tokens the encoder returned for it.
        """
        return None

    # --- files a checkpoint carries for the plugin -----------------------------------------------------------------
    def save_files(self, folder: Path) -> bool:
        """Write the files the restored plugin needs beyond ``preprocess.json`` into ``folder`` (created by the
        plugin); return whether it wrote any.

        A checkpoint must not depend on a folder elsewhere on the machine that trained it (a Hugging Face model's
        config and tokenizer): what the plugin writes here travels with the checkpoint, and ``attach_files`` reads it.
        """
        return False

    def attach_files(self, folder: Path) -> None:
        """Use the files a checkpoint carries for this plugin (written by ``save_files``) instead of the paths in its
        options; called before ``load_preprocess_state``."""
        raise ValueError(f"modality {self.name!r} keeps no files in checkpoints, but the checkpoint lists some for it")


def present_rows(mask: Tensor) -> Tensor:
    """Indices of the rows whose modality is present: (B,) bool -> (P,) long."""
    return torch.nonzero(mask, as_tuple=False).flatten()
