"""Every registered modality honours the plugin contract (timm-style: one test over the whole registry).

Parametrised over ``medclip.list_modalities()``, so a new plugin (built-in or third-party) is covered the moment it
registers: synthetic -> (fit) -> transforms -> collate (with a missing row) -> encoder, alone and inside
ContrastiveModel: shapes, masks, no NaN, gradients; a JSON round trip of the preprocessing state and of the config;
the capability attributes of the base class with their declared types. That training transforms replay from the
per-sample seed and leave the global RNGs alone is tested over the same registry in ``test_random_transforms.py``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import numpy as np
import pytest
import torch

import medclip
from medclip.config import to_dict
from medclip.model import ContrastiveModel, ProjectionHead
from medclip.types import EncoderOutput, Modality, ModalityConfig
from tests.helpers import same_encoder_input

BUILT_INS = {"ct", "oct", "wsi", "ecg", "report", "expression", "image"}


def test_built_in_plugins_are_registered_through_entry_points():
    assert BUILT_INS <= set(medclip.list_modalities())
    for name in BUILT_INS:
        assert issubclass(type(medclip.get_modality(name)), Modality)


def test_unknown_modality_names_closest():
    with pytest.raises(medclip.RegistryError, match="did you mean 'report'"):
        medclip.get_modality("reprot")


@pytest.mark.parametrize("name", medclip.list_modalities())
def test_plugin_contract(name):
    plugin = medclip.get_modality(name)
    assert plugin.name == name
    samples = plugin.synthetic(6, seed=0)
    assert len(samples) == 6 and all(name in sample for sample in samples)
    if plugin.fits_on_data:
        plugin.fit(iter(samples))
    transform = plugin.transforms(train=False)
    prepared = [transform(dict(sample)) for sample in samples]
    prepared[2] = {key: value for key, value in prepared[2].items() if not key.startswith(name)}  # a missing row
    assert transform(dict(prepared[2])) == prepared[2]  # samples without the modality pass through

    batch = plugin.collate(prepared)
    mask = batch[f"{name}_mask"]
    assert mask.dtype == torch.bool and mask.tolist() == [True, True, False, True, True, True]

    encoder = plugin.build_encoder()
    direct = encoder(medclip.model.select_rows(batch[name], torch.tensor([0, 1])))
    assert isinstance(direct, EncoderOutput)
    assert direct.pooled.shape == (2, encoder.output_dim)
    assert torch.isfinite(direct.pooled).all()
    if direct.tokens is not None:
        assert direct.tokens.ndim == 3 and direct.tokens.shape[0] == 2
        assert torch.isfinite(direct.tokens).all()
    if direct.token_mask is not None:
        assert direct.tokens is not None, "a token mask without tokens"
        assert direct.token_mask.dtype == torch.bool and direct.token_mask.shape == direct.tokens.shape[:2]

    model = ContrastiveModel({name: encoder}, {name: ProjectionHead(encoder.output_dim, 16)})
    outputs = model(batch)
    features = outputs["features"][name]
    assert features.shape == (6, 16)
    assert torch.isfinite(features).all()
    assert torch.allclose(features[mask].norm(dim=-1), torch.ones(5), atol=1e-5)
    assert torch.count_nonzero(features[2]) == 0  # the missing row stays empty
    if name in outputs["tokens"]:
        tokens, token_mask = outputs["tokens"][name], outputs["token_masks"][name]
        assert tokens.shape[:2] == token_mask.shape and tokens.shape[0] == 6
        assert torch.isfinite(tokens).all()
        assert not token_mask[2].any()
    features[mask].sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    state = json.loads(json.dumps(plugin.preprocess_state()))
    restored = medclip.get_modality(name, plugin.config)
    restored.load_preprocess_state(state)
    again = restored.collate([restored.transforms(train=False)(dict(s)) for s in samples])
    reference = plugin.collate([transform(dict(s)) for s in samples])
    assert same_encoder_input(again[name], reference[name])


@pytest.mark.parametrize("name", medclip.list_modalities())
def test_synthetic_samples_follow_their_seed(name):
    plugin = medclip.get_modality(name)
    first, again, other = (plugin.synthetic(3, seed=seed) for seed in (4, 4, 5))

    def data(samples):
        return [np.asarray(sample[name]) for sample in samples]

    assert all(np.array_equal(a, b) for a, b in zip(data(first), data(again), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(data(first), data(other), strict=True))


@pytest.mark.parametrize("name", medclip.list_modalities())
def test_config_round_trips_through_json(name):
    plugin = medclip.get_modality(name)
    assert isinstance(plugin.config, plugin.config_class) and issubclass(plugin.config_class, ModalityConfig)
    stored = json.loads(json.dumps(to_dict(plugin.config)))
    assert medclip.get_modality(name, stored).config == plugin.config


@pytest.mark.parametrize("name", medclip.list_modalities())
def test_capability_attributes_have_their_declared_types(name):
    cls = type(medclip.get_modality(name))
    assert isinstance(cls.fits_on_data, bool)
    assert isinstance(cls.file_suffixes, tuple)
    assert all(
        isinstance(suffix, str) and suffix.startswith(".") and suffix == suffix.lower() for suffix in cls.file_suffixes
    )
    assert isinstance(cls.reads_directories, bool)
    assert isinstance(cls.files_hold_many_patients, bool)
    assert isinstance(cls.text_input, bool)
    assert isinstance(cls.export_dynamic_axes, Mapping)
    for key, axes in cls.export_dynamic_axes.items():
        assert isinstance(key, str) and isinstance(axes, Mapping)
        assert all(isinstance(axis, int) and axis >= 1 and isinstance(label, str) for axis, label in axes.items())
    assert isinstance(cls.weight_slots, Mapping)
    assert all(isinstance(kind, str) and isinstance(path, str) for kind, path in cls.weight_slots.items())
    assert isinstance(cls.backbone_option, str) and cls.backbone_option
    if "timm_backbone" in cls.weight_slots:  # convert-weights prints this option for the user to copy: it must exist
        assert cls.backbone_option in {field.name for field in dataclasses.fields(cls.config_class)}
    assert cls.text_input or cls.file_suffixes or cls.reads_directories, "a file modality must say what it reads"
