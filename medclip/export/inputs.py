"""Example inputs of a modality tower and which of their dimensions vary, from the plugin's own synthetic data.

Every plugin makes tiny realistically shaped samples (``synthetic``); they go through the model's own evaluation
preprocessing and collate, so the example is exactly what the tower receives in serving. A dimension is dynamic
when it is the batch, or when its size differs between single-sample batches of the plugin's synthetic data (a
report's token count; a modality whose preprocessing fixes a size, such as a CT volume's or a 10-s ECG's, keeps it
static). Dimensions whose sizes agree across inputs and samples share one name (a report's ``input_ids``,
``attention_mask`` and ``sentence_ids`` have one length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

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


def tower_inputs(model: Any, modality: str, batch_size: int = 2, samples: int = 4, seed: int = 0) -> TowerInputs:
    """Example inputs of ``modality``'s tower and their dynamic dimensions (see the module docstring)."""
    preprocess = model.preprocess[modality]
    synthetic = preprocess.plugin.synthetic(max(samples, batch_size), seed=seed)
    names, example, is_dict = _flatten(preprocess(synthetic[:batch_size], loaded=True)[modality], modality)
    # Sizes of every non-batch axis in each single-sample batch: axes whose sizes differ are variable.
    sizes: dict[tuple[int, int], list[int]] = {}
    for sample in synthetic:
        _, tensors, _ = _flatten(preprocess([sample], loaded=True)[modality], modality)
        for index, tensor in enumerate(tensors):
            for axis in range(1, tensor.dim()):
                sizes.setdefault((index, axis), []).append(int(tensor.shape[axis]))
    dimension_names: dict[tuple[int, ...], str] = {}
    dynamic: list[dict[int, str]] = [{0: BATCH} for _ in example]
    for (index, axis), values in sizes.items():
        if len(set(values)) > 1:
            key = tuple(values)
            dimension_names.setdefault(key, f"length_{len(dimension_names) + 1}")
            dynamic[index][axis] = dimension_names[key]
    return TowerInputs(names, is_dict, example, dynamic)


def resized_example(inputs: TowerInputs, model: Any, modality: str, batch_size: int, seed: int) -> list[Tensor]:
    """Another example batch (other samples, another batch size, other lengths) to check an export against."""
    preprocess = model.preprocess[modality]
    synthetic = preprocess.plugin.synthetic(batch_size, seed=seed)
    _, tensors, _ = _flatten(preprocess(synthetic, loaded=True)[modality], modality)
    return tensors
