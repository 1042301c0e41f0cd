"""The uniformity regulariser: value against Wang & Isola's published formula, gradients (gradcheck and the
reference's autograd), masks, scopes, the config, and agreement with the evaluation diagnostic."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medclip.config import ConfigError
from medclip.eval.diagnostics import uniformity as diagnostic_uniformity
from medclip.losses import UniformityLoss, UniformityLossConfig, build_loss, uniformity_loss
from tests.helpers import unit_rows

pytestmark = pytest.mark.usefixtures("one_thread", "float64_default")


def wang_isola(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola's reference (their paper, Fig. 5): mean over the pairs i < j of the Gaussian potential."""
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


@pytest.mark.parametrize("t", [2.0, 0.7, 40.0])
def test_value_and_gradient_match_the_reference(t):
    x = unit_rows(9, 5, 0).requires_grad_()
    mask = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=torch.bool)
    value = uniformity_loss(x, mask, t)
    (grad,) = torch.autograd.grad(value, x)
    reference_x = x.detach().clone().requires_grad_()
    reference = wang_isola(reference_x[mask], t)
    (reference_grad,) = torch.autograd.grad(reference, reference_x)
    torch.testing.assert_close(value, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-10, atol=1e-12)
    assert torch.all(grad[~mask] == 0)  # a masked row neither pushes nor is pushed


def test_gradcheck():
    x = unit_rows(6, 3, 1).requires_grad_()
    mask = torch.tensor([1, 0, 1, 1, 1, 1], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda rows: uniformity_loss(rows, mask, 2.0), (x,))
    assert torch.autograd.gradgradcheck(lambda rows: uniformity_loss(rows, mask, 2.0), (x,))


def test_masked_rows_do_not_change_the_value_and_closed_forms():
    x = unit_rows(7, 4, 2)
    mask = torch.tensor([1, 1, 1, 0, 1, 0, 1], dtype=torch.bool)
    garbage = x.clone()
    garbage[~mask] = 1e6
    assert uniformity_loss(garbage, mask).item() == pytest.approx(uniformity_loss(x[mask]).item(), rel=1e-12)
    assert uniformity_loss(torch.tile(x[:1], (5, 1))).item() == pytest.approx(0.0, abs=1e-12)  # collapse
    antipodal = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    assert uniformity_loss(antipodal, t=2.0).item() == pytest.approx(-8.0)


def test_large_t_does_not_underflow():
    x = unit_rows(5, 3, 3)
    value = uniformity_loss(x, t=2000.0)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(diagnostic_uniformity(x.numpy(), t=2000.0), rel=1e-10)
    assert math.isinf(wang_isola(x, 2000.0).item())  # the naive formula underflows to log(0)


def test_fewer_than_two_rows_give_a_connected_zero():
    x = unit_rows(4, 3, 4).requires_grad_()
    value = uniformity_loss(x, torch.tensor([0, 1, 0, 0], dtype=torch.bool))
    value.backward()
    assert value.item() == 0.0 and x.grad is not None and torch.all(x.grad == 0)


def test_loss_equals_the_evaluation_diagnostic():
    x = unit_rows(30, 8, 5)
    assert uniformity_loss(x).item() == pytest.approx(diagnostic_uniformity(x.numpy()), rel=1e-12)


def test_module_scopes_modalities_and_metrics():
    ct, report, ecg = unit_rows(6, 4, 6), unit_rows(6, 4, 7), unit_rows(6, 4, 8)
    masks = {
        "ct": torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool),
        "report": torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool),
        "ecg": torch.tensor([0, 0, 1, 0, 0, 0], dtype=torch.bool),  # a single row: no pair, skipped
    }
    features = {"ct": ct, "report": report, "ecg": ecg}
    per_modality = UniformityLoss()(features=features, masks=masks)
    expected_ct, expected_report = wang_isola(ct[masks["ct"]]), wang_isola(report[masks["report"]])
    assert set(per_modality) == {"uniformity_loss", "uniformity/ct", "uniformity/report"}
    assert per_modality["uniformity/ct"].item() == pytest.approx(expected_ct.item(), rel=1e-12)
    assert per_modality["uniformity_loss"].item() == pytest.approx((expected_ct + expected_report).item() / 2)
    joint = UniformityLoss(UniformityLossConfig(scope="joint"))(features=features, masks=masks)
    pooled = torch.cat([ct[masks["ct"]], report[masks["report"]], ecg[masks["ecg"]]])
    assert set(joint) == {"uniformity_loss"}
    assert joint["uniformity_loss"].item() == pytest.approx(wang_isola(pooled).item(), rel=1e-12)
    only_ct = UniformityLoss(UniformityLossConfig(modalities=["ct"]))(features=features, masks=masks)
    assert only_ct["uniformity_loss"].item() == pytest.approx(expected_ct.item(), rel=1e-12)
    with pytest.raises(ValueError, match="not in the model outputs"):
        UniformityLoss(UniformityLossConfig(modalities=["wsi"]))(features=features)


def test_joint_scope_penalises_a_modality_gap():
    """Per-modality uniformity is blind to where each modality sits; the joint scope sees two separate cones."""
    ct = unit_rows(20, 6, 9)
    report = F.normalize(ct + 0.1 * unit_rows(20, 6, 10), dim=-1)
    shifted = F.normalize(report + 3 * F.normalize(torch.ones(6), dim=0), dim=-1)
    joint = UniformityLoss(UniformityLossConfig(scope="joint"))
    aligned, gapped = joint(features={"ct": ct, "report": report}), joint(features={"ct": ct, "report": shifted})
    assert gapped["uniformity_loss"] > aligned["uniformity_loss"]


def test_config_through_build_loss():
    combined = build_loss({"clip": 1.0, "uniformity": {"weight": 0.2, "t": 3.0, "scope": "joint"}})
    assert combined.weights["uniformity"] == 0.2 and combined.losses["uniformity"].config.t == 3.0
    features = {"ct": unit_rows(5, 4, 11), "report": unit_rows(5, 4, 12)}
    out = combined(features=features, logit_scale=torch.tensor(10.0))
    assert out["loss"].item() == pytest.approx(out["clip_loss"].item() + 0.2 * out["uniformity_loss"].item())
    with pytest.raises(ConfigError, match="t must be"):
        build_loss({"uniformity": {"t": 0}})
    with pytest.raises(ConfigError, match="scope must be one of"):
        build_loss({"uniformity": {"scope": "pairwise"}})
    with pytest.raises(ConfigError, match="tt"):
        build_loss({"uniformity": {"tt": 2}})


def test_half_precision_features_are_summed_in_float32():
    x = unit_rows(16, 8, 13)
    value = uniformity_loss(x.to(torch.bfloat16))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(wang_isola(x.to(torch.bfloat16).double()).item(), abs=1e-4)
