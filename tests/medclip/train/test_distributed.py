"""Real 2-process data-parallel training through ``recipes.pretrain.pretrain``, as ``torchrun`` runs it.

Two gloo processes on CPU (RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in the environment, exactly the
variables torchrun sets) each call ``pretrain(config)`` with ``train.batch_size = B``. The sampler cuts every global
batch of ``B * world_size`` rows into per-rank slices and the losses use global negatives, so the result must equal one
process trained with ``batch_size = 2B``: the saved weights are compared tensor by tensor. The data is scanpy's real
pbmc68k_reduced, written by the quickstart recipe as .h5ad + manifest CSV.

Also covered: SigLIP (a learnable loss parameter outside DDP), a loss whose parameter starts from the RNG (pretrain
seeds every rank differently, so the trainer must broadcast the loss's parameters like DDP does the model's), and a
resume across world sizes (2 steps on 2 processes, then 2 more on 1 process == 4 steps straight on 1 process).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from medclip.losses import SigLipLoss, SigLipLossConfig
from tests.distributed_helpers import free_ports, set_torchrun_environment, spawn_and_wait

WORLD = 2
LOCAL_BATCH = 8  # rows per process per step; the single-process reference takes the whole global batch
GLOBAL_BATCH = LOCAL_BATCH * WORLD
STEPS = 4
# Two warmup steps: the first two learning rates (0.5, 1.0 x lr) are the same whether the run is 2 or 4 steps long,
# so a 2-step run resumed to 4 steps follows the straight 4-step schedule (then cosine: 1.0, 0.5 x lr).
WARMUP_STEPS = 2
TOLERANCE = 1e-5
SPAWN_DEADLINE_S = 150  # a mismatched collective fails the test instead of hanging it
CLIP = {"clip": 1.0}
SIGLIP = {"siglip": {"init_logit_bias": -2.0}}  # near 0, so its gradient has one clear sign and it moves
RANDOM_INIT_LOSS = "siglip_random_init"


class RandomInitBiasSigLip(SigLipLoss):
    """A third-party-style loss whose learnable parameter starts from the global RNG, as prototype losses do.

    ``pretrain`` seeds each rank with ``train.seed + rank``, so this parameter starts differently on every process;
    only a broadcast from rank 0 keeps the ranks training one model. Registered only inside the worker processes.
    """

    def __init__(self, config: SigLipLossConfig | None = None) -> None:
        super().__init__(config)
        with torch.no_grad():
            self.logit_bias.add_(torch.randn(()))


def experiment(
    manifest: Path, out: Path, loss: dict, batch_size: int, steps: int = STEPS, resume: Path | None = None
) -> dict[str, Any]:
    """A small, fast, deterministic pretraining config (dropout 0: each rank's RNG is seeded differently)."""
    return {
        "modalities": {
            "expression": {"encoder": "mlp", "width": 32, "layers": 2, "dropout": 0.0},
            "report": {
                "encoder": "transformer",
                "width": 32,
                "layers": 1,
                "heads": 2,
                "max_tokens": 32,
                "vocab_size": 200,
                "dropout": 0.0,
            },
        },
        "model": {"embed_dim": 16},
        "loss": loss,
        "data": {"manifest": str(manifest), "val_fraction": 0.1, "test_fraction": 0.1},
        "train": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": 1e-3,
            "warmup_steps": WARMUP_STEPS,
            "log_every": 1,
            "precision": "fp32",
            "device": "cpu",
            "progress": False,
            "seed": 0,
            "resume": str(resume or ""),
        },
        "out": str(out),
    }


def run_pretrain(config: dict[str, Any]):
    from medclip.config import build
    from recipes.pretrain import Config as PretrainConfig
    from recipes.pretrain import pretrain

    return pretrain(build(PretrainConfig, config))


def worker(rank: int, jobs: list[tuple[str, dict[str, Any], int]], results_dir: str) -> None:
    """One torchrun-style process: the environment torchrun sets, then ``pretrain(config)`` per job."""
    from medclip.losses import register_loss

    set_torchrun_environment(rank, WORLD)
    register_loss(RANDOM_INIT_LOSS)(RandomInitBiasSigLip)
    for name, config, port in jobs:
        os.environ["MASTER_PORT"] = str(port)  # a fresh port per job: each pretrain() sets up its own process group
        result = run_pretrain(config)
        metrics = {key: float(value) for key, value in result.metrics.items()}
        Path(results_dir, f"{name}_rank{rank}.json").write_text(json.dumps(metrics))


def spawn_workers(jobs: list[tuple[str, dict[str, Any]]], results_dir: Path) -> None:
    """Run every job on WORLD fresh processes; fail (never hang) if they do not finish in time."""
    ports = free_ports(len(jobs))
    jobs_with_ports = [(name, config, port) for (name, config), port in zip(jobs, ports, strict=True)]
    spawn_and_wait(worker, (jobs_with_ports, str(results_dir)), WORLD, SPAWN_DEADLINE_S, "training")


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoint" / "model.safetensors"))


def trainer_state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())


def assert_same_weights(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=TOLERANCE, msg=lambda m, k=key: f"{k}: {m}")


def max_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    return max(float((first[key] - second[key]).abs().max()) for key in first)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Every training run of this file; keys name the run, values are its output directory."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    from recipes.quickstart import Config, write_dataset

    root = tmp_path_factory.mktemp("train_distributed")
    manifest, _, _ = write_dataset(Config(), root / "data")
    out = {name: root / name for name in ("clip_2p", "siglip_2p", "random_init_2p", "clip_2p_2steps")}
    distributed_jobs = [
        ("clip_2p", experiment(manifest, out["clip_2p"], CLIP, LOCAL_BATCH)),
        ("siglip_2p", experiment(manifest, out["siglip_2p"], SIGLIP, LOCAL_BATCH)),
        ("random_init_2p", experiment(manifest, out["random_init_2p"], {RANDOM_INIT_LOSS: 1.0}, LOCAL_BATCH)),
        ("clip_2p_2steps", experiment(manifest, out["clip_2p_2steps"], CLIP, LOCAL_BATCH, steps=2)),
    ]
    spawn_workers(distributed_jobs, root)
    for name in ("clip_1p", "siglip_1p", "clip_1p_half_batch", "clip_resumed_1p"):
        out[name] = root / name
    run_pretrain(experiment(manifest, out["clip_1p"], CLIP, GLOBAL_BATCH))
    run_pretrain(experiment(manifest, out["siglip_1p"], SIGLIP, GLOBAL_BATCH))
    run_pretrain(experiment(manifest, out["clip_1p_half_batch"], CLIP, LOCAL_BATCH))
    resume_from = out["clip_2p_2steps"] / "checkpoint"
    run_pretrain(experiment(manifest, out["clip_resumed_1p"], CLIP, GLOBAL_BATCH, resume=resume_from))
    out["metrics"] = root
    return out


def rank_metrics(runs: dict[str, Path], name: str) -> list[dict[str, float]]:
    return [json.loads((runs["metrics"] / f"{name}_rank{rank}.json").read_text()) for rank in range(WORLD)]


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_two_processes_equal_one_process_with_the_same_global_batch(runs, loss):
    distributed, single = runs[f"{loss}_2p"], runs[f"{loss}_1p"]
    assert_same_weights(weights(distributed), weights(single))
    state = trainer_state(distributed)
    assert (state["world_size"], state["step"], state["consumed_batches"]) == (WORLD, STEPS, STEPS)
    assert trainer_state(single)["world_size"] == 1


def test_siglip_bias_is_trained_and_identical_on_every_rank(runs):
    saved = weights(runs["siglip_2p"])
    bias_keys = [key for key in saved if key.startswith("loss.") and key.endswith("logit_bias")]
    assert bias_keys, "the SigLIP checkpoint must carry the learnable bias"
    assert all(abs(float(saved[key]) - SIGLIP["siglip"]["init_logit_bias"]) > 1e-4 for key in bias_keys)
    per_rank = rank_metrics(runs, "siglip_2p")
    assert per_rank[0]["siglip/logit_bias"] == per_rank[1]["siglip/logit_bias"]
    assert per_rank[0]["loss"] == pytest.approx(per_rank[1]["loss"], abs=1e-6)  # the exact global loss on each rank


def test_loss_parameters_start_from_rank_zero_even_when_drawn_from_the_rng(runs):
    """pretrain seeds rank r with seed + r: a loss parameter drawn from the RNG must still be one value everywhere."""
    per_rank = rank_metrics(runs, "random_init_2p")
    key = f"{RANDOM_INIT_LOSS}/logit_bias"
    assert per_rank[0][key] == per_rank[1][key]
    assert per_rank[0]["loss"] == pytest.approx(per_rank[1]["loss"], abs=1e-6)


def test_the_comparison_tells_different_global_batches_apart(runs):
    """The tolerance is tight enough to matter: half the global batch gives clearly different weights."""
    assert max_difference(weights(runs["clip_1p_half_batch"]), weights(runs["clip_1p"])) > 100 * TOLERANCE


def test_resume_on_one_process_from_a_two_process_checkpoint(runs):
    """2 steps on 2 processes (batch B each) + 2 steps on 1 process (batch 2B) == 4 steps on 1 process (batch 2B)."""
    first_half = trainer_state(runs["clip_2p_2steps"])
    assert (first_half["world_size"], first_half["step"], first_half["consumed_batches"]) == (WORLD, 2, 2)
    assert max_difference(weights(runs["clip_2p_2steps"]), weights(runs["clip_1p"])) > 100 * TOLERANCE
    assert_same_weights(weights(runs["clip_resumed_1p"]), weights(runs["clip_1p"]))
    resumed = trainer_state(runs["clip_resumed_1p"])
    assert (resumed["world_size"], resumed["step"], resumed["consumed_batches"]) == (1, STEPS, STEPS)
