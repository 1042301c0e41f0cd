"""LoRA, freezing and the EMA teacher on 2 real gloo processes through ``recipes.pretrain.pretrain`` (as torchrun):

- DDP with LoRA on the report tower, a frozen expression prefix, the EMA teacher and the ``distill`` loss: 2 processes
  with batch B == 1 process with batch 2B, for the model and for the teacher (``ema.safetensors``);
- FSDP2 with LoRA and a frozen prefix (no teacher: refused with FSDP): the same equality, and the checkpoint loads.

The helpers (config, spawning, weight comparison) are those of tests/medclip/train/test_distributed.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import medclip
from medclip.train.ema import EMA_FILE
from tests.medclip.train.test_distributed import (
    GLOBAL_BATCH,
    LOCAL_BATCH,
    assert_same_weights,
    experiment,
    run_pretrain,
    spawn_workers,
    weights,
)

pytestmark = pytest.mark.slow

TUNED_LOSS = {"clip": 0.6, "distill": 0.4}


def tuned(config: dict[str, Any], ema: bool, parallel: str = "ddp") -> dict[str, Any]:
    modalities = {
        "expression": {**config["modalities"]["expression"], "freeze": ["input_projection"]},
        "report": {**config["modalities"]["report"], "lora": {"r": 2}},
    }
    train = {**config["train"], "parallel": parallel}
    if ema:
        train["ema"] = {"decay": 0.5}  # a short memory, so the teacher moves visibly in 4 steps
    return {**config, "modalities": modalities, "train": train}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pbmc_manifest) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetuning_distributed")
    configs = {
        "ddp": tuned(experiment(pbmc_manifest, root / "ddp", TUNED_LOSS, LOCAL_BATCH), ema=True),
        "fsdp": tuned(experiment(pbmc_manifest, root / "fsdp", {"clip": 1.0}, LOCAL_BATCH), ema=False, parallel="fsdp"),
    }
    spawn_workers(list(configs.items()), root)
    run_pretrain(tuned(experiment(pbmc_manifest, root / "single_ema", TUNED_LOSS, GLOBAL_BATCH), ema=True))
    run_pretrain(tuned(experiment(pbmc_manifest, root / "single", {"clip": 1.0}, GLOBAL_BATCH), ema=False))
    return {name: root / name for name in ("ddp", "fsdp", "single_ema", "single")}


def test_ddp_with_lora_freezing_and_the_teacher_equals_one_process(runs):
    assert_same_weights(weights(runs["ddp"]), weights(runs["single_ema"]))
    teacher = load_file(str(runs["ddp"] / "checkpoint" / EMA_FILE))
    assert_same_weights(teacher, load_file(str(runs["single_ema"] / "checkpoint" / EMA_FILE)))
    assert any(key.endswith("lora_A") for key in teacher)


def test_fsdp_with_lora_and_freezing_equals_one_process(runs):
    assert_same_weights(weights(runs["fsdp"]), weights(runs["single"]))
    model = medclip.load_model(runs["fsdp"] / "checkpoint")
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert any(name.startswith("encoders.expression.input_projection") for name in frozen)
    assert any(name.endswith("lora_B") and torch.count_nonzero(p) for name, p in model.named_parameters())
