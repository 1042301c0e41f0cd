"""Train-time augmentation: drawn from the per-sample generator, small, and never a left-right flip by default."""

from __future__ import annotations

import numpy as np
import torch

import medclip
from medclip.data.loader import seeded_sample
from modalities.image.augment import ImageAugmentation
from modalities.image.phantom import chest_radiograph


def phantom_sample(plugin, seed: int = 3):
    case = chest_radiograph(seed, shape=(128, 128), findings={"Cardiomegaly": True})
    return plugin.synthetic(1, seed=seed)[0] | {"image": case.display[None]}


def train_image(plugin, sample, seed: int) -> torch.Tensor:
    transform = plugin.transforms(train=True)
    with seeded_sample(seed):
        return transform(dict(sample))["image"].float()


def test_per_sample_generator_makes_augmentation_reproducible_and_leaves_the_global_rng_alone():
    plugin = medclip.get_modality("image", {"size": [64, 64]})
    sample = phantom_sample(plugin)
    state = torch.get_rng_state()
    a, b, c = (train_image(plugin, sample, seed) for seed in (11, 11, 12))
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn from torch's global generator
    assert torch.equal(a, b) and not torch.equal(a, c)
    evaluated = plugin.transforms(train=False)(dict(sample))["image"]
    assert torch.is_tensor(a) and a.shape == tuple(evaluated.shape) == (1, 64, 64)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert float((a - torch.as_tensor(np.asarray(evaluated, dtype=np.float32))).abs().mean()) < 0.15  # small changes


def test_no_left_right_flip_by_default_laterality_is_kept():
    """The phantom's heart bulges to the image's right (patient's left); augmented images keep it there."""
    plugin = medclip.get_modality("image", {"size": [64, 64]})
    sample = phantom_sample(plugin)
    heart_side = []
    for seed in range(24):
        image = train_image(plugin, sample, seed)[0]
        heart_band = image[36:52]  # rows through the heart
        heart_side.append(float(heart_band[:, 36:50].mean() - heart_band[:, 14:28].mean()))
    assert min(heart_side) > 0.005  # heart (bright) right of the image's centre in every draw
    flipping = medclip.get_modality("image", {"size": [64, 64], "horizontal_flip": True})
    flipped = [train_image(flipping, sample, seed)[0] for seed in range(24)]
    sides = [float(image[36:52, 36:50].mean() - image[36:52, 14:28].mean()) for image in flipped]
    assert min(sides) < -0.005 < 0.005 < max(sides)  # with flips on, both sides occur


def test_affine_keeps_a_non_square_image_unsheared():
    pixels = torch.zeros(1, 40, 80)
    pixels[:, 15:25, 35:45] = 1.0  # a square spot
    augmentation = ImageAugmentation(
        rotation_degrees=0.0, scale_range=0.0, translate_fraction=0.0, noise_std=0.0, intensity_jitter=0.0
    )
    assert torch.equal(augmentation(pixels.clone()), pixels)
    turned = ImageAugmentation(
        rotation_degrees=90.0, scale_range=0.0, translate_fraction=0.0, noise_std=0.0, intensity_jitter=0.0
    )
    with seeded_sample(0):  # some rotation within +-90 degrees
        rotated = turned(pixels.clone())
    bright = torch.nonzero(rotated[0] > 0.5)
    height = int(bright[:, 0].max() - bright[:, 0].min() + 1)
    width = int(bright[:, 1].max() - bright[:, 1].min() + 1)
    assert abs(height - width) <= 2  # the square's bounding box stays square: rotation in pixel space, no shear


def test_channel_dropout_keeps_at_least_one_channel_and_masks_the_rest():
    channels = ["DNA", "ER", "RNA", "AGP", "Mito"]
    plugin = medclip.get_modality(
        "image", {"image_type": "multichannel", "channels": channels, "size": [32, 32], "channel_dropout": 0.9}
    )
    sample = plugin.synthetic(1)[0]
    transform = plugin.transforms(train=True)
    kept_counts = []
    for seed in range(20):
        with seeded_sample(seed):
            out = transform(dict(sample))
        mask = out["image_channels"]
        kept_counts.append(int(mask.sum()))
        assert not out["image"][~mask].any()  # hidden channels are zero
    assert min(kept_counts) >= 1 and max(kept_counts) < 5
    evaluated = plugin.transforms(train=False)(dict(sample))
    assert evaluated["image_channels"].all()  # no dropout when evaluating
