"""Masked-autoencoder pretraining of the volume ViT on unpaired CT/OCT volumes (the ``medclip mae`` pre-stage).

``masking.py`` cuts volumes into the ViT's patches and draws which ones each sample hides; ``model.py`` holds the
autoencoder (the plugin's own encoder on the visible patches + a light decoder); ``figure.py`` draws reconstructions.
The loss is ``medclip.losses.mae`` and the command is ``recipes/mae.py``; docs/mae.md says when to use it.
"""

from .masking import PatchGrid, draw_visible_patches, hidden_patches, mask_seed
from .model import MaskedAutoencoderConfig, MaskedVolumeAutoencoder, MaskedVolumeDecoder, build_masked_autoencoder

__all__ = [
    "MaskedAutoencoderConfig",
    "MaskedVolumeAutoencoder",
    "MaskedVolumeDecoder",
    "PatchGrid",
    "build_masked_autoencoder",
    "draw_visible_patches",
    "hidden_patches",
    "mask_seed",
]
