"""Example inputs of a modality tower and which of their dimensions vary, from the plugin's own synthetic data or
from real inputs the user names.

Every plugin makes tiny realistically shaped samples (``synthetic``); they go through the model's own evaluation
preprocessing and collate, so the example is exactly what the tower receives in serving. Where synthetic samples
cannot fit a trained model's preprocessing (synthetic gene names against a real gene vocabulary), real inputs are
given instead (``medclip export --example REF``). A dimension is dynamic
when it is the batch, or when its size differs between single-sample batches of the plugin's synthetic data (a
report's token count; a modality whose preprocessing fixes a size, such as a CT volume's or a 10-s ECG's, keeps it
static). Dimensions whose sizes agree across inputs and samples share one name (a report's ``input_ids``,
``attention_mask`` and ``sentence_ids`` have one length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..types import ModalityError

BATCH = "batch"


@dataclass
class TowerInputs:
    """The tower's inputs: names in argument order, an example batch, and the dynamic dimensions of each.

    Attributes:
        names: input names in argument order (a dict input's keys, or the modality's name for one tensor).
        is_dict: whether the encoder takes a dict (the tower rebuilds it from ``names``).
        example: one example batch, a tensor per name.
        dynamic: per input, axis -> dimension name ("batch", "length_1", ...).
    """

    names: list[str]
    is_dict: bool
    example: list[Tensor]
    dynamic: list[dict[int, str]] = field(default_factory=list)


def _flatten(value: Any, name: str) -> tuple[list[str], list[Tensor], bool]:
    if isinstance(value, Tensor):
        return [name], [value], False
    if isinstance(value, dict) and all(isinstance(item, Tensor) for item in value.values()):
        return list(value), list(value.values()), True
    raise TypeError(f"modality {name!r}: export needs a tensor or a dict of tensors as encoder input")


def example_samples(model: Any, modality: str, references: Sequence[Any] = (), count: int = 4, seed: int = 0):
    """Loaded samples to export and check with: the given references (real inputs, read with the model's own
    loader), else the plugin's synthetic samples.

    Raises:
        ModalityError: a reference cannot be read or disagrees with the model's preprocessing.
    """
    preprocess = model.preprocess[modality]
    if references:
        return [preprocess.load(reference) for reference in references]
    return preprocess.plugin.synthetic(count, seed=seed)


def _collated(model: Any, modality: str, samples: Sequence[Any]) -> tuple[list[str], list[Tensor], bool]:
    try:
        batch = model.preprocess[modality](samples, loaded=True)
    except ModalityError as error:
        raise ModalityError(
            error.reason,
            f"the example inputs do not fit this model's {modality!r} preprocessing ({error}); pass real inputs "
            "as examples (medclip export --example REF, at least two)",
        ) from None
    return _flatten(batch[modality], modality)


def tower_inputs(model: Any, modality: str, samples: Sequence[Any], batch_size: int = 2) -> TowerInputs:
    """Example inputs of ``modality``'s tower from loaded ``samples``, with their dynamic dimensions."""
    chosen = [samples[index % len(samples)] for index in range(batch_size)]
    names, example, is_dict = _collated(model, modality, chosen)
    # Sizes of every non-batch axis in each single-sample batch: axes whose sizes differ are variable.
    sizes: dict[tuple[int, int], list[int]] = {}
    for sample in samples:
        _, tensors, _ = _collated(model, modality, [sample])
        for index, tensor in enumerate(tensors):
            for axis in range(1, tensor.dim()):
                sizes.setdefault((index, axis), []).append(int(tensor.shape[axis]))
    declared = getattr(model.preprocess[modality].plugin, "export_dynamic_axes", {}) or {}
    dynamic: list[dict[int, str]] = [{0: BATCH, **dict(declared.get(name, {}))} for name in names]
    dimension_names: dict[tuple[int, ...], str] = {}
    for (index, axis), values in sizes.items():
        if len(set(values)) > 1 and axis not in dynamic[index]:
            key = tuple(values)
            dimension_names.setdefault(key, f"length_{len(dimension_names) + 1}")
            dynamic[index][axis] = dimension_names[key]
    return TowerInputs(names, is_dict, example, dynamic)


def shortened(inputs: TowerInputs, tensors: list[Tensor]) -> list[Tensor] | None:
    """``tensors`` cut to three quarters along every dynamic axis beyond the batch (at least 2), to check an export
    on another length than its example's (synthetic reports can all reach ``max_tokens``); None without such axes."""
    if not any(axis != 0 for axes in inputs.dynamic for axis in axes):
        return None
    cut = []
    for tensor, axes in zip(tensors, inputs.dynamic, strict=True):
        for axis in axes:
            if axis != 0 and tensor.shape[axis] > 2:
                tensor = tensor.narrow(axis, 0, max(2, tensor.shape[axis] * 3 // 4))
        cut.append(tensor)
    return cut


def check_batch(model: Any, modality: str, samples: Sequence[Any], batch_size: int) -> list[Tensor]:
    """Another batch to check an export against: ``batch_size`` (not the example's) samples in reverse order."""
    chosen = [samples[-1 - index % len(samples)] for index in range(batch_size)]
    return _collated(model, modality, chosen)[1]
