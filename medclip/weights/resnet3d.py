"""``--from monai_resnet`` / ``--from medicalnet``: 3-D ResNet weights onto the volume plugins' MONAI-layout ResNets.

MONAI's ``monai.networks.nets.resnet10/18/34/50`` and MedicalNet's releases (``resnet_10_23dataset.pth``, keys
``module.conv1.weight``, ... under ``state_dict``) share MONAI's key layout. The importer takes off the wrappers,
drops classifier and segmentation heads (``fc.*``, MedicalNet's ``conv_seg.*``), reads the architecture off the keys
(block type and blocks per stage give the depth; the shortcut layers give the convention) and names the volume
encoder that holds it: ``monai_resnet{depth}`` (MONAI's defaults: projection shortcuts with bias) or
``medicalnet_resnet{depth}`` (MedicalNet's: zero-padding shortcuts for 18/34, projection without bias for 10/50).
These names are the volume plugin's (``modalities/volume/resnet3d.py``), the one place both sides agree on.

``--in-channels N`` spreads a 1-channel first convolution over N input channels (CT: one per HU window): the kernel
is repeated and divided by N, so a volume repeated over the channels gives the release's exact output.
BatchNorm running counters missing from old releases are set to zero (PyTorch's own default for them).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from .importers import Converted, Importer, ImportOptions
from .strict import WeightsError

DEPTHS = {  # (bottleneck, blocks per stage) -> depth: MONAI's table
    (False, (1, 1, 1, 1)): 10,
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (3, 4, 6, 3)): 50,
}
HEADS = ("fc.", "conv_seg.")  # MONAI's classifier, MedicalNet's segmentation decoder
FIRST_CONV = "conv1.weight"


def _convention(state: dict[str, Tensor], depth: int) -> str:
    """ "monai" or "medicalnet", from the shortcut layers the weights have."""
    projection = any(".downsample." in key for key in state)
    bias = any(re.search(r"\.downsample\.0\.bias$", key) for key in state)
    if projection and bias:
        return "monai"
    medicalnet_projection = depth not in (18, 34)  # MedicalNet: shortcut A (no weights) for 18/34, B without bias
    if projection == medicalnet_projection and not bias:
        return "medicalnet"
    kind = "projection shortcuts without bias" if projection else "zero-padding shortcuts"
    raise WeightsError(
        f"this ResNet-{depth} has {kind}, which neither MONAI's defaults (projection with bias) nor MedicalNet's "
        f"releases ({'projection without bias' if medicalnet_projection else 'zero-padding'}) use"
    )


def _spread_channels(weight: Tensor, channels: int) -> Tensor:
    """(F, C0, k, k, k) -> (F, N, k, k, k): repeated over N channels and scaled by C0 / N (same output on a volume
    repeated over the channels)."""
    original = weight.shape[1]
    repeats = -(-channels // original)  # ceil
    return weight.repeat(1, repeats, 1, 1, 1)[:, :channels] * (original / channels)


def convert_resnet3d(state: dict[str, Tensor], options: ImportOptions) -> Converted:
    dropped = sorted(key for key in state if key.startswith(HEADS))
    tensors = {key: value for key, value in state.items() if not key.startswith(HEADS)}
    if FIRST_CONV not in tensors or tensors[FIRST_CONV].ndim != 5:
        raise WeightsError(
            f"not a 3-D ResNet in MONAI's layout: no 5-D {FIRST_CONV} (keys such as layer1.0.conv1.weight)"
        )
    bottleneck = "layer1.0.conv3.weight" in tensors
    blocks = tuple(
        len({match.group(1) for key in tensors if (match := re.match(rf"layer{stage}\.(\d+)\.", key))})
        for stage in range(1, 5)
    )
    depth = DEPTHS.get((bottleneck, blocks))
    if depth is None:
        raise WeightsError(
            f"a 3-D ResNet with {'bottleneck' if bottleneck else 'basic'} blocks {list(blocks)} per stage; the volume "
            "encoders hold ResNet-10/18/34/50"
        )
    family = _convention(tensors, depth)
    notes = []
    if dropped:
        notes.append(f"dropped the classifier / segmentation head ({len(dropped)} tensors): the encoder has none")
    counters = [
        key[: -len("running_mean")] + "num_batches_tracked"
        for key in tensors
        if key.endswith("running_mean") and key[: -len("running_mean")] + "num_batches_tracked" not in tensors
    ]
    for key in counters:
        tensors[key] = torch.tensor(0, dtype=torch.long)
    if counters:
        notes.append(f"set {len(counters)} missing BatchNorm counters (num_batches_tracked) to 0")
    channels = int(tensors[FIRST_CONV].shape[1])
    if options.in_channels and options.in_channels != channels:
        tensors[FIRST_CONV] = _spread_channels(tensors[FIRST_CONV], options.in_channels)
        notes.append(f"first convolution spread from {channels} to {options.in_channels} input channels")
        channels = options.in_channels
    settings = {"encoder": f"{family}_resnet{depth}"}
    notes.append(f"{family} ResNet-{depth} for {channels}-channel volumes (ct: one channel per hu_windows entry)")
    return Converted(tensors, settings, {}, notes)


MONAI_RESNET = Importer(
    name="monai_resnet",
    description="a MONAI 3-D ResNet (monai.networks.nets.resnet10/18/34/50) onto the ct / oct encoder",
    parts={"resnet3d": convert_resnet3d},
)
MEDICALNET = Importer(
    name="medicalnet",
    description="a MedicalNet (Med3D) release, e.g. resnet_18_23dataset.pth, onto the ct / oct encoder",
    parts={"resnet3d": convert_resnet3d},
)
