"""3-D ResNets laid out exactly as MONAI's ``monai.networks.nets.ResNet``, so MONAI and MedicalNet weights fit them.

The volume plugin's own "resnet" uses GroupNorm and its own module names (batch-size independent, trained from
scratch); pretrained 3-D ResNets (MedicalNet's Med3D, MONAI bundles) use BatchNorm and MONAI's names (``conv1``,
``bn1``, ``layer1.0.conv1``, ...). These encoders subclass MONAI's ResNet without its classifier, so their state dict
is MONAI's key for key and ``medclip convert-weights --from monai_resnet|medicalnet`` only strips wrappers.

Two conventions per depth, because the weights differ in their shortcut layers:

- ``monai_resnet{10,18,34,50}``: MONAI's defaults (projection shortcuts "B" with a bias).
- ``medicalnet_resnet{10,18,34,50}``: MedicalNet's releases (zero-padding shortcuts "A" for 18/34, projection
  shortcuts without bias for 10/50; what MONAI itself requires to load them).

Both use MedicalNet's 7x7x7 stride-2 first convolution (MONAI's default stride is 1, which quadruples the memory of a
CT volume); the weights are the same either way, only the computation differs. The width is fixed by the
architecture (512 features; 2048 for the bottleneck ResNet-50). Tokens: one per voxel of the last feature map;
pooled: their mean (MONAI's average pool).

BatchNorm keeps per-batch statistics in training: a batch needs more than one value per channel after the last
stage (volumes of at least 64 voxels a side, or more than one volume per batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck, get_inplanes
from torch import Tensor

from medclip.types import EncoderOutput

from .encoders import VOLUME_ENCODERS, VolumeEncoderSpec


@dataclass(frozen=True)
class ResNet3DVariant:
    """One registered architecture: depth, block, blocks per stage, shortcut convention."""

    family: str
    depth: int
    bottleneck: bool
    layers: tuple[int, int, int, int]
    shortcut: str  # "A": zero-padding (no weights), "B": 1x1x1 convolution + BatchNorm
    downsample_bias: bool

    @property
    def name(self) -> str:
        return f"{self.family}_resnet{self.depth}"

    @property
    def width(self) -> int:
        return get_inplanes()[-1] * (ResNetBottleneck.expansion if self.bottleneck else ResNetBlock.expansion)


DEPTHS = {10: (False, (1, 1, 1, 1)), 18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3))}


def _medicalnet_shortcut(depth: int) -> tuple[str, bool]:
    # MONAI's get_medicalnet_pretrained_resnet_args: shortcut A for 18/34, B without bias otherwise
    return ("A", True) if depth in (18, 34) else ("B", False)


VARIANTS: dict[str, ResNet3DVariant] = {}
for _depth, (_bottleneck, _layers) in DEPTHS.items():
    for _variant in (
        ResNet3DVariant("monai", _depth, _bottleneck, _layers, "B", True),
        ResNet3DVariant("medicalnet", _depth, _bottleneck, _layers, *_medicalnet_shortcut(_depth)),
    ):
        VARIANTS[_variant.name] = _variant


class MonaiResNet3D(ResNet):
    """A MONAI 3-D ResNet without classifier: (B, C, I, J, K) -> pooled (B, F), tokens (B, I'*J'*K', F)."""

    def __init__(self, spec: VolumeEncoderSpec, variant: ResNet3DVariant) -> None:
        if spec.width not in (0, variant.width) or spec.layers:
            raise ValueError(
                f"{variant.name} has a fixed architecture ({variant.width} features); leave width and layers unset"
            )
        super().__init__(
            block=ResNetBottleneck if variant.bottleneck else ResNetBlock,
            layers=list(variant.layers),
            block_inplanes=get_inplanes(),
            spatial_dims=3,
            n_input_channels=spec.in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type=variant.shortcut,
            feed_forward=False,
            bias_downsample=variant.downsample_bias,
        )
        self.output_dim = variant.width

    def forward(self, volumes: Tensor) -> EncoderOutput:
        x = self.act(self.bn1(self.conv1(volumes.to(self.conv1.weight.dtype))))
        if not self.no_max_pool:
            x = self.maxpool(x)
        features = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, F, I', J', K')
        tokens = features.flatten(2).transpose(1, 2)  # (B, I'*J'*K', F)
        return EncoderOutput(pooled=tokens.mean(dim=1), tokens=tokens, token_mask=None)


def _builder(variant: ResNet3DVariant):
    def build(spec: VolumeEncoderSpec) -> MonaiResNet3D:
        return MonaiResNet3D(spec, variant)

    return build


for _name, _variant in VARIANTS.items():
    VOLUME_ENCODERS.register(_name, _builder(_variant))
