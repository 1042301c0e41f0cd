"""No lost work: non-finite steps are skipped and counted, SIGTERM checkpoints, SIGKILL (even mid-write) resumes
to the same weights as an uninterrupted run, and a checkpoint never holds non-finite weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

import pytest
import torch

from medclip.checkpoint import CheckpointError
from medclip.losses import LOSSES, register_loss
from medclip.losses.base import LossConfig
from medclip.train.resilience import NonFiniteLossError
from recipes.pretrain import pretrain
from tests.helpers import checkpoint_weights
from tests.paths import REPOSITORY


@dataclass
class PoisonConfig(LossConfig):
    nan_calls: list[int] | None = None  # which forward calls return NaN (0-based); None = every call


class PoisonLoss(torch.nn.Module):
    """A real loss plugin for this test: zero, or NaN on chosen calls (as a diverging run would produce)."""

    config_class = PoisonConfig

    def __init__(self, config: PoisonConfig | None = None) -> None:
        super().__init__()
        self.config = config or PoisonConfig()
        self.calls = 0

    def forward(self, features, **unused):
        value = sum(feature.sum() for feature in features.values()) * 0.0
        poisoned = self.config.nan_calls is None or self.calls in self.config.nan_calls
        self.calls += 1
        return {"poison_loss": value + float("nan") if poisoned else value}


@pytest.fixture
def poison_loss():
    register_loss("poison")(PoisonLoss)
    yield
    LOSSES._items.pop("poison", None)


def test_non_finite_steps_are_skipped_and_counted(small_experiment, poison_loss, tmp_path):
    result = pretrain(small_experiment("train.steps=6", "loss.poison.nan_calls=[1,2]", out=tmp_path / "run"))
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    steps = [record for record in log if "loss" in record]  # validation records carry no training loss
    assert steps[-1]["step"] == 6 and steps[-1]["skipped_nonfinite_steps"] == 2
    assert all(torch.isfinite(value).all() for value in checkpoint_weights(result.checkpoint).values())


def test_training_stops_after_consecutive_non_finite_steps(small_experiment, poison_loss, tmp_path):
    config = small_experiment("train.steps=20", "train.max_nonfinite_steps=2", "loss.poison=1.0", out=tmp_path / "r")
    with pytest.raises(NonFiniteLossError, match="3 consecutive training steps"):
        pretrain(config)
    assert not (tmp_path / "r" / "checkpoint").exists()  # nothing non-finite was ever saved


def test_a_checkpoint_never_holds_non_finite_weights(small_experiment, tmp_path):
    import medclip
    from medclip.checkpoint import read_card, save_model

    result = pretrain(small_experiment("train.steps=2", out=tmp_path / "run"))
    model = medclip.load_model(result.checkpoint)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        save_model(result.checkpoint, model, model.preprocess.modalities, read_card(result.checkpoint))
    assert all(torch.isfinite(value).all() for value in checkpoint_weights(result.checkpoint).values())


DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from tests.conftest import SMALL_EXPERIMENT
    from medclip import config
    from recipes.pretrain import Config as PretrainConfig
    from medclip import checkpoint
    from medclip.train import state
    from recipes.pretrain import pretrain

    kill_at_write = int(os.environ.get("KILL_AT_WRITE", "0"))
    if kill_at_write:  # die by SIGKILL in the middle of the N-th safetensors write (weights, then optimizer)
        real_save, calls = checkpoint.save_file, [0]
        def dying_save(tensors, filename, metadata=None):
            calls[0] += 1
            if calls[0] == kill_at_write:
                with open(filename, "wb") as handle:
                    handle.write(b"half a file")
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(tensors, filename, metadata)
        checkpoint.save_file = state.save_file = dying_save
    overrides = [*SMALL_EXPERIMENT, *sys.argv[1:]]
    data = config.apply_overrides({{"modalities": {{"expression": {{}}, "report": {{}}}}}}, overrides)
    pretrain(config.build(PretrainConfig, data))
    """
)


def _launch(tmp_path, args, env_extra=None):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=str(REPOSITORY)))
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, str(driver), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_step(log_path, step, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log_path.is_file():
            lines = log_path.read_text().splitlines()
            if lines and json.loads(lines[-1])["step"] >= step:
                return
        if process.poll() is not None:
            return
        time.sleep(0.05)
    raise TimeoutError("training made no progress")


def test_sigkill_anywhere_then_auto_resume_equals_an_uninterrupted_run(small_experiment, pbmc_manifest, tmp_path):
    steps = ["train.steps=8", "train.checkpoint_every=1", "train.resume=auto", "train.seed=3"]
    straight = pretrain(small_experiment(*steps[:2], "train.seed=3", out=tmp_path / "straight"))
    out = tmp_path / "killed"
    args = [*steps, f"data.manifest={pbmc_manifest}", f"out={out}"]
    # Killed in the middle of a checkpoint write (the 3rd safetensors write of a run) ...
    process = _launch(tmp_path, args, {"KILL_AT_WRITE": "3"})
    process.wait(timeout=300)
    assert process.returncode == -signal.SIGKILL
    # ... and, resumed, at whatever step the run has reached (each launch costs ~15 s of imports on 2 cores).
    process = _launch(tmp_path, args)
    _wait_for_step(out / "train_log.jsonl", 6, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    finished = _launch(tmp_path, args)
    _, stderr = finished.communicate(timeout=300)
    assert finished.returncode == 0, stderr[-2000:]
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 8
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no stale temporary files
    a, b = checkpoint_weights(straight.checkpoint), checkpoint_weights(out / "checkpoint")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sigterm_writes_a_checkpoint_and_stops(pbmc_manifest, tmp_path):
    out = tmp_path / "preempted"
    args = ["train.steps=500", f"data.manifest={pbmc_manifest}", f"out={out}"]
    process = _launch(tmp_path, args)
    _wait_for_step(out / "train_log.jsonl", 3, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert "SIGTERM received" in stdout
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    logged = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert 3 <= state["step"] < 500 and state["step"] == logged[-1]


def test_recovery_after_a_kill_between_the_two_renames_of_a_checkpoint_swap(small_experiment, tmp_path):
    from medclip.train.resilience import recover_checkpoint_dir

    result = pretrain(small_experiment("train.steps=2", out=tmp_path / "run"))
    before = checkpoint_weights(result.checkpoint)
    retired = tmp_path / "run" / ".checkpoint.old"
    result.checkpoint.rename(retired)  # the old checkpoint moved aside, the new one not yet moved in
    (tmp_path / "run" / ".checkpoint.abc.staging").mkdir()  # a half-written new one
    assert recover_checkpoint_dir(tmp_path / "run" / "checkpoint") == result.checkpoint
    assert not retired.exists() and not (tmp_path / "run" / ".checkpoint.abc.staging").exists()
    after = checkpoint_weights(result.checkpoint)
    assert all(torch.equal(before[key], after[key]) for key in before)
