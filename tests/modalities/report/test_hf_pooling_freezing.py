"""The "hf" report encoder's options: ``pooling`` (mean of real tokens, or the [CLS] state) and ``freeze_pretrained``
(the pretrained weights fixed, dropout off, only the projection head trains). A tiny BERT saved with
``save_pretrained`` stands for the user's local model copy."""

from __future__ import annotations

import pytest
import torch

import medclip
from modalities.report.config import ReportConfig
from tests.modalities.report.test_report import tiny_hf_model  # noqa: F401  (the fixture)

TEXTS = ["FINDINGS: The lungs are clear. Small nodule in right upper lobe.", "No effusion."]


def _encoder_and_batch(hf_model, **options):
    modality = medclip.get_modality("report", {"encoder": "hf", "hf_model": str(hf_model), "max_tokens": 32, **options})
    modality.fit(modality.synthetic(2))
    transform = modality.transforms(train=False)
    batch = modality.collate([transform(modality.load(text)) for text in TEXTS])
    return modality.build_encoder(), batch["report"]


def test_cls_pooling_takes_the_first_state(tiny_hf_model, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    encoder, inputs = _encoder_and_batch(tiny_hf_model, pooling="cls")
    encoder.eval()
    with torch.no_grad():
        output = encoder(inputs)
        hidden = encoder.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"].long())
    torch.testing.assert_close(output.pooled, hidden.last_hidden_state[:, 0])
    mean_encoder, _ = _encoder_and_batch(tiny_hf_model)
    mean_encoder.eval()
    with torch.no_grad():
        assert not torch.allclose(mean_encoder(inputs).pooled, output.pooled)


def test_a_frozen_pretrained_model_gets_no_gradient_and_no_dropout(tiny_hf_model, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder, inputs = _encoder_and_batch(tiny_hf_model, freeze_pretrained=True)
    encoder.train()
    assert not encoder.model.training  # dropout stays off in the frozen model
    assert not any(parameter.requires_grad for parameter in encoder.model.parameters())
    first, second = encoder(inputs).pooled, encoder(inputs).pooled
    torch.testing.assert_close(first, second)  # deterministic: no dropout
    head = torch.nn.Linear(encoder.output_dim, 4)
    head(first).sum().backward()
    assert head.weight.grad is not None and not first.requires_grad


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="report.pooling must be one of mean, cls"):
        ReportConfig(pooling="max")
    with pytest.raises(ValueError, match="freeze_pretrained applies to the pretrained 'hf' encoder only"):
        ReportConfig(freeze_pretrained=True)
