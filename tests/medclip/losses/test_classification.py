"""The registered classification loss (fine-tuning): unknown labels never count, and it is told apart from the
contrastive losses in the registry."""

from __future__ import annotations

import math

import pytest
import torch

import medclip
from medclip.config import ConfigError
from medclip.losses import build_loss, list_losses


def test_binary_mode_averages_known_entries_only():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]], requires_grad=True)
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    value = build_loss({"classification": {"mode": "binary"}})(logits=logits, labels=labels)["loss"]

    def bce(x: float, y: float) -> float:  # independent reference: -[y log s(x) + (1 - y) log(1 - s(x))]
        s = 1 / (1 + math.exp(-x))
        return -(y * math.log(s) + (1 - y) * math.log(1 - s))

    assert value.item() == pytest.approx((bce(2.0, 1) + bce(0.5, 0) + bce(3.0, 1)) / 3, rel=1e-6)
    value.backward()
    assert logits.grad[0, 1] == 0  # the unknown label sends no gradient


def test_multiclass_mode_scores_rows_with_one_known_positive():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, float("nan"), 1.0]])  # only row 0 is usable
    value = build_loss({"classification": {"mode": "multiclass"}})(logits=logits, labels=labels)["loss"]
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 1 + math.exp(-1.0)))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    none_usable = build_loss({"classification": {"mode": "multiclass"}})(logits=logits[1:], labels=labels[1:])
    assert none_usable["loss"].item() == 0.0


def test_bad_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="classification mode"):
        build_loss({"classification": {"mode": "ordinal"}})


def test_registries_list_by_pattern_and_kind():
    assert "classification" in list_losses(consumes="logits")
    assert "classification" not in list_losses(consumes="embeddings")
    assert set(list_losses("soft*")) == {"soft_label"}
    assert medclip.list_modalities("e*") == ["ecg", "expression"]
    assert medclip.list_modalities("zzz*") == []
