"""The ``distill`` loss (ALBEF momentum distillation) against a naive per-row reference, its masks, temperatures, tiled
path and errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from medclip.losses import build_loss, distill_loss

pytestmark = pytest.mark.usefixtures("float64_default")


def unit_rows(rows: int, dim: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator, dtype=torch.float64), dim=-1)


def naive_distill(a, b, scale, teacher_a, teacher_b, teacher_scale, mask) -> float:
    """Row by row with Python floats: -sum_j p_ij log q_ij, p = softmax(teacher logits), q = softmax(student)."""
    valid = [i for i, keep in enumerate(mask) if keep]
    total = 0.0
    for queries, candidates, teacher_q, teacher_c in ((a, b, teacher_a, teacher_b), (b, a, teacher_b, teacher_a)):
        for i in valid:
            student = [scale * float(queries[i] @ candidates[j]) for j in valid]
            teacher = [teacher_scale * float(teacher_q[i] @ teacher_c[j]) for j in valid]
            log_z_student = math.log(sum(math.exp(s) for s in student))
            z_teacher = sum(math.exp(t) for t in teacher)
            total -= sum(math.exp(t) / z_teacher * (s - log_z_student) for s, t in zip(student, teacher, strict=True))
    return total / (2 * len(valid))


@pytest.mark.parametrize("teacher_scale", [None, 2.0])
def test_distill_matches_the_naive_reference_with_masks(teacher_scale):
    a, b = unit_rows(7, 4, 1), unit_rows(7, 4, 2)
    teacher_a, teacher_b = unit_rows(7, 5, 3), unit_rows(7, 5, 4)  # the teacher may embed in another size
    mask = torch.tensor([True, True, False, True, True, False, True])
    scale = torch.tensor(3.0)
    value = distill_loss(a, b, scale, teacher_a, teacher_b, mask, teacher_scale=teacher_scale)
    reference = naive_distill(a, b, 3.0, teacher_a, teacher_b, teacher_scale or 3.0, mask.tolist())
    assert value.item() == pytest.approx(reference, rel=1e-12)


def test_tiled_path_equals_the_plain_one():
    a, b = unit_rows(9, 4, 5), unit_rows(9, 4, 6)
    teacher_a, teacher_b = unit_rows(9, 4, 7), unit_rows(9, 4, 8)
    mask = torch.tensor([True, False, True, True, True, True, False, True, True])
    scale = torch.tensor(5.0)
    plain = distill_loss(a, b, scale, teacher_a, teacher_b, mask)
    tiled = distill_loss(a, b, scale, teacher_a, teacher_b, mask, tiled_above=0, tile_size=2)
    assert tiled.item() == pytest.approx(plain.item(), rel=1e-12)


def test_gradients_reach_the_student_only_and_vanish_when_student_and_teacher_agree():
    a, b = unit_rows(5, 4, 9).requires_grad_(), unit_rows(5, 4, 10).requires_grad_()
    teacher_a, teacher_b = unit_rows(5, 4, 11).requires_grad_(), unit_rows(5, 4, 12).requires_grad_()
    log_scale = torch.tensor(math.log(4.0), requires_grad=True)
    distill_loss(a, b, log_scale.exp(), teacher_a, teacher_b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0 and log_scale.grad.abs() > 0
    assert teacher_a.grad is None and teacher_b.grad is None  # targets are constants
    # a fresh EMA teacher is the model: the targets are the model's own softmax, whose gradient is zero
    same_a, same_b = unit_rows(5, 4, 13).requires_grad_(), unit_rows(5, 4, 14).requires_grad_()
    distill_loss(same_a, same_b, torch.tensor(4.0), same_a.detach(), same_b.detach()).backward()
    assert same_a.grad.abs().max() < 1e-12 and same_b.grad.abs().max() < 1e-12


def test_registered_loss_reads_teacher_features_from_the_model_outputs():
    a, b = unit_rows(6, 4, 15), unit_rows(6, 4, 16)
    teacher = {"ct": unit_rows(6, 4, 17), "report": unit_rows(6, 4, 18)}
    masks = {"ct": torch.tensor([True, True, True, False, True, True]), "report": torch.ones(6, dtype=torch.bool)}
    scale = torch.tensor(2.5)
    outputs = {"features": {"ct": a, "report": b}, "masks": masks, "logit_scale": scale, "teacher_features": teacher}
    result = build_loss({"clip": 0.6, "distill": {"weight": 0.4, "temperature": 0.5}})(**outputs)
    expected = distill_loss(a, b, scale, teacher["ct"], teacher["report"], masks["ct"], teacher_scale=2.0)
    assert result["distill_loss"].item() == pytest.approx(expected.item(), rel=1e-12)
    assert result["distill/ct-report"].item() == pytest.approx(expected.item(), rel=1e-12)
    assert result["loss"].item() == pytest.approx(0.6 * result["clip_loss"].item() + 0.4 * expected.item(), rel=1e-12)


def test_missing_teacher_and_bad_options_are_named():
    outputs = {"features": {"ct": unit_rows(3, 4, 1), "report": unit_rows(3, 4, 2)}, "logit_scale": torch.tensor(2.0)}
    with pytest.raises(ValueError, match="teacher_features.*train.ema.decay"):
        build_loss({"distill": 1.0})(**outputs)
    with pytest.raises(ValueError, match=r"teacher has no embeddings of \['report'\]"):
        build_loss({"distill": 1.0})(**outputs, teacher_features={"ct": unit_rows(3, 4, 3)})
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        build_loss({"distill": {"temperature": -1.0}})
