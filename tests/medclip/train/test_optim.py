"""The optimizer trains only what requires a gradient, and the run log's parameter counts per tower add up."""

from __future__ import annotations

import torch

from medclip.nn.freeze import freeze
from medclip.nn.lora import inject_lora
from medclip.train.config import TrainConfig
from medclip.train.optim import build_optimizer, describe_counts, parameter_counts
from medclip.types import LoRAConfig
from tests.medclip.train.tiny import tiny_batch, tiny_model


def test_frozen_parameters_get_no_optimizer_slot_and_are_counted_per_tower():
    model = tiny_model()  # each encoder: linear 5/6 -> 4, BatchNorm(4), a frozen linear 4 -> 4; heads 4 -> 3
    freeze(model.encoders["report"], True, "report")
    inject_lora(model.encoders["ecg"], LoRAConfig(r=1, targets=["linear"]), "ecg")  # adds A (1 x 5) and B (4 x 1)
    optimizer = build_optimizer([model], TrainConfig())
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        assert (id(parameter) in optimised) == parameter.requires_grad, name
    counts = parameter_counts(model)
    ecg_linear, report_linear, norm, fixed, head = 5 * 4 + 4, 6 * 4 + 4, 2 * 4, 4 * 4 + 4, 4 * 3 + 3
    assert counts == {
        "parameters/log_logit_scale/trainable": 1,
        "parameters/log_logit_scale/frozen": 0,
        "parameters/ecg/trainable": ecg_linear + 5 + 4 + norm + head,  # the linear's base weights stay trainable
        "parameters/ecg/frozen": fixed,
        "parameters/report/trainable": head,
        "parameters/report/frozen": report_linear + norm + fixed,
    }
    total = sum(parameter.numel() for parameter in model.parameters())
    assert sum(counts.values()) == total
    assert describe_counts(counts).startswith("log_logit_scale 1 / 0, ecg ")
    # AdamW really leaves frozen parameters alone
    before = model.encoders["report"].linear.weight.clone()
    model.train()
    outputs = model(tiny_batch())
    (outputs["features"]["ecg"] * outputs["features"]["report"]).sum().backward()
    optimizer.step()
    assert torch.equal(model.encoders["report"].linear.weight, before)
