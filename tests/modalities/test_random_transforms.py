"""Every modality's training transforms draw from the per-sample generator, never from a global RNG.

``medclip.data.loader.ThreadLoader`` seeds one generator per sample from (base seed, batch, position); a transform
that draws from it gives the same augmented sample in every run and with any number of loader threads, and leaves
torch's, NumPy's and Python's global generators (shared with the training step's dropout) alone. One test over the
whole registry, so a new plugin is covered automatically; the modalities below that augment by default (or with the
option named here) must also show that the seed changes the draw.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, SequentialSampler

import medclip
from medclip.data.loader import ThreadLoader, seeded_sample
from tests.helpers import same_encoder_input

# Options that switch a modality's training randomness on where it is off by default.
AUGMENTING_OPTIONS = {
    "expression": {"gene_dropout": 0.3},
    "report": {"shuffle_sentences": True},
    "wsi": {"max_patches": 4},
}
# Built-ins whose training transforms are random with the options above: the seed must change what they draw.
RANDOM_TRAINING_TRANSFORMS = {"ct", "oct", "wsi", "ecg", "report", "expression", "image"}


def augmenting_plugin(name: str):
    plugin = medclip.get_modality(name, AUGMENTING_OPTIONS.get(name))
    samples = plugin.synthetic(3, seed=0)
    if plugin.fits_on_data:
        plugin.fit(iter(samples))
    return plugin, samples


def global_rng_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def assert_global_rng_untouched(before):
    torch_state, numpy_state, python_state = global_rng_states()
    assert torch.equal(torch_state, before[0])
    assert np.array_equal(numpy_state, before[1])
    assert python_state == before[2]


def transformed(transform, samples, seed: int):
    out = []
    for position, sample in enumerate(samples):
        with seeded_sample(seed + position):
            out.append(transform(dict(sample)))
    return out


@pytest.mark.parametrize("name", medclip.list_modalities())
def test_training_transforms_replay_from_the_sample_seed_and_leave_global_rngs_alone(name):
    plugin, samples = augmenting_plugin(name)
    transform = plugin.transforms(train=True)
    before = global_rng_states()
    first = plugin.collate(transformed(transform, samples, seed=11))
    second = plugin.collate(transformed(plugin.transforms(train=True), samples, seed=11))
    assert_global_rng_untouched(before)
    assert same_encoder_input(first[name], second[name])
    if name in RANDOM_TRAINING_TRANSFORMS:
        others = [plugin.collate(transformed(transform, samples, seed=seed))[name] for seed in (12, 13, 14)]
        assert any(not same_encoder_input(first[name], other) for other in others), (
            "the sample seed does not reach the draws"
        )


def test_wsi_feature_bags_are_subsampled_from_the_sample_seed():
    plugin = medclip.get_modality("wsi", {"max_patches": 4})
    features = np.arange(12 * 8, dtype=np.float32).reshape(12, 8)  # (N, F)
    bag = {"wsi": features, "wsi_coords": np.arange(24).reshape(12, 2), "wsi_meta": {"kind": "features"}}
    transform = plugin.transforms(train=True)
    before = global_rng_states()
    kept = [transformed(transform, [bag], seed)[0]["wsi_coords"][:, 0].tolist() for seed in (5, 5, 6, 7, 8)]
    assert_global_rng_untouched(before)
    assert kept[0] == kept[1] and len(kept[0]) == 4 and kept[0] == sorted(kept[0])
    assert any(other != kept[0] for other in kept[2:])


class TransformedSamples(torch.utils.data.Dataset):
    """A map-style dataset applying a modality's training transform, as ``ManifestDataset`` does."""

    def __init__(self, samples, transform) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        return self.transform(dict(self.samples[index]))


@pytest.mark.parametrize("name", ["wsi", "expression"])
def test_one_or_two_loader_threads_give_the_same_augmented_batches(name):
    plugin, _ = augmenting_plugin(name)
    samples = plugin.synthetic(6, seed=1)
    dataset = TransformedSamples(samples, plugin.transforms(train=True))

    def epoch(threads: int, seed: int):
        loader = ThreadLoader(
            dataset,
            BatchSampler(SequentialSampler(dataset), batch_size=2, drop_last=False),
            plugin.collate,
            num_workers=threads,
            generator=torch.Generator().manual_seed(seed),
        )
        return [batch[name] for batch in loader]

    before = global_rng_states()
    one, two, other_seed = epoch(1, seed=3), epoch(2, seed=3), epoch(2, seed=4)
    assert_global_rng_untouched(before)
    for a, b in zip(one, two, strict=True):
        assert same_encoder_input(a, b)
    assert not all(same_encoder_input(a, b) for a, b in zip(one, other_seed, strict=True))
