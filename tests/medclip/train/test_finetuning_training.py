"""Training with LoRA, freezing and the EMA teacher end to end (``recipes.pretrain`` on the quickstart's real data):
exact resume with the teacher, frozen weights that never move, parameter counts in the run log, and the refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import medclip
from medclip.checkpoint import MODEL_FILE, CheckpointError
from medclip.config import ConfigError
from medclip.train.ema import EMA_FILE, load_ema_weights
from medclip.train.state import OPTIMIZER_FILE
from recipes.pretrain import pretrain

pytestmark = pytest.mark.slow

TUNED = [
    "modalities.report.lora.r=2",
    "modalities.report.dropout=0.0",  # the report's adapters live on PyTorch attention weights: no adapter dropout
    "modalities.expression.freeze=[input_projection]",
    "train.ema.decay=0.9",
    "loss.clip=0.6",
    "loss.distill=0.4",
]


def _files(path, name):
    return load_file(str(path / name))


def test_tuned_training_resumes_exactly_with_its_teacher(small_experiment, tmp_path):
    """4 steps straight == 2 steps, stop, resume, 2 steps: model, optimizer and teacher alike."""
    straight = pretrain(small_experiment("train.steps=4", *TUNED, out=tmp_path / "straight"))
    stopped = pretrain(small_experiment("train.steps=4", "train.stop_at=2", *TUNED, out=tmp_path / "stopped"))
    resumed = pretrain(
        small_experiment("train.steps=4", *TUNED, f"train.resume={stopped.checkpoint}", out=tmp_path / "resumed")
    )
    for name in (MODEL_FILE, EMA_FILE, OPTIMIZER_FILE):
        a, b = _files(straight.checkpoint, name), _files(resumed.checkpoint, name)
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"

    model, teacher = _files(straight.checkpoint, MODEL_FILE), _files(straight.checkpoint, EMA_FILE)
    early = _files(stopped.checkpoint, MODEL_FILE)
    # only adapters, heads, the logit scale and the unfrozen expression layers train; frozen weights never move
    lora_keys = [key for key in model if "lora_" in key]
    assert lora_keys and any(not torch.equal(model[key], early[key]) for key in lora_keys)
    for key in model:
        if key.startswith("model.encoders.report.") and "lora_" not in key:
            assert torch.equal(model[key], early[key]), key
        if key.startswith("model.encoders.expression.input_projection."):
            assert torch.equal(model[key], early[key]), key
    # the teacher keeps its own copy of exactly the trained parameters (plus buffers), and lags behind the model
    trained = {key[len("parameters.") :] for key in teacher if key.startswith("parameters.")}
    assert set(lora_keys) >= {f"model.{key}" for key in trained if key.startswith("encoders.report.")}
    assert not any(key.startswith("encoders.expression.input_projection.") for key in trained)
    assert "log_logit_scale" in trained
    assert not torch.equal(teacher["parameters.log_logit_scale"], model["model.log_logit_scale"])
    # the optimizer holds moments for trained parameters only
    optimizer_state = json.loads((straight.checkpoint / "trainer_state.json").read_text())["optimizer"]
    optimised = sum(len(group["params"]) for group in optimizer_state["param_groups"])
    assert optimised == len(trained)

    first = json.loads((tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()[0])
    assert first["parameters/report/frozen"] > first["parameters/report/trainable"] > 0
    assert first["parameters/expression/frozen"] > 0 and first["parameters/log_logit_scale/trainable"] == 1
    assert first["distill_loss"] > 0
    second = json.loads((tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()[1])
    assert not any(key.startswith("parameters/") for key in second)  # once per run, not every step

    # the checkpoint loads for inference with its adapters; the teacher's weights load into it too
    loaded = medclip.load_model(straight.checkpoint)
    assert any(name.endswith("lora_A") for name, _ in loaded.named_parameters())
    load_ema_weights(straight.checkpoint, loaded)
    torch.testing.assert_close(loaded.log_logit_scale.detach(), teacher["parameters.log_logit_scale"])

    # a checkpoint without a teacher cannot resume a run with one exactly
    without = tmp_path / "without_teacher"
    shutil.copytree(stopped.checkpoint, without)
    (without / EMA_FILE).unlink()
    with pytest.raises(CheckpointError, match="trained without train.ema"):
        pretrain(small_experiment("train.steps=4", *TUNED, f"train.resume={without}", out=tmp_path / "again"))


def test_distill_without_the_teacher_is_refused_before_training(small_experiment, tmp_path):
    with pytest.raises(ConfigError, match="loss distill needs the EMA teacher"):
        pretrain(small_experiment("train.steps=2", "loss.distill=0.4", out=tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoint").exists()
