"""Every registered modality honours the plugin contract (timm-style: one test over the whole registry).

synthetic -> (fit) -> transforms -> collate (with a missing row) -> encoder inside ContrastiveModel: shapes, masks,
no NaN, gradients, and a JSON round trip of the preprocessing state.
"""

from __future__ import annotations

import json

import pytest
import torch

import medclip
from medclip.model import ContrastiveModel, ProjectionHead
from medclip.types import EncoderOutput, Modality

BUILT_INS = {"report", "expression"}


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
    _assert_same(again[name], reference[name])


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    else:
        assert torch.equal(a, b)
