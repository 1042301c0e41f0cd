"""``medclip mae`` on 2 real gloo processes (as torchrun runs it), with DDP and with FSDP.

Masks depend on (seed, draw, manifest row) only, every rank scores the same number of hidden patches, and DDP / FSDP
average the ranks' gradients, so 2 processes with batch B each must train the same weights as 1 process with batch
2B (compared tensor by tensor, within 1e-5), the draw counter included.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from tests.distributed_helpers import free_ports, set_torchrun_environment, spawn_and_wait
from tests.recipes.mae_data import mae_config, write_volume_manifest

WORLD = 2
LOCAL_BATCH = 2
STEPS = 3
TOLERANCE = 1e-5
SPAWN_DEADLINE_S = 240
COMMON = [f"train.steps={STEPS}", "train.warmup_steps=2", "train.device=cpu", "val_volumes=0", "figure_volumes=0"]


def worker(rank: int, jobs: list[tuple[Path, Path, list[str], int]]) -> None:
    from recipes import mae

    set_torchrun_environment(rank, WORLD)
    for manifest, out, overrides, port in jobs:
        os.environ["MASTER_PORT"] = str(port)  # each run sets up (and tears down) its own process group
        mae.run_mae(mae_config(manifest, out, *overrides))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    from recipes import mae

    root = tmp_path_factory.mktemp("mae_distributed")
    manifest = write_volume_manifest(root / "data")
    out = {name: root / name for name in ("ddp", "fsdp", "single", "single_half_batch")}
    jobs = [
        (manifest, out["ddp"], [*COMMON, f"train.batch_size={LOCAL_BATCH}", "train.parallel=ddp"]),
        (manifest, out["fsdp"], [*COMMON, f"train.batch_size={LOCAL_BATCH}", "train.parallel=fsdp"]),
    ]
    ports = free_ports(len(jobs))
    spawn_and_wait(
        worker, ([(*job, port) for job, port in zip(jobs, ports, strict=True)],), WORLD, SPAWN_DEADLINE_S, "mae"
    )
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mae.run_mae(mae_config(manifest, out["single"], *COMMON, f"train.batch_size={LOCAL_BATCH * WORLD}"))
        mae.run_mae(mae_config(manifest, out["single_half_batch"], *COMMON, f"train.batch_size={LOCAL_BATCH}"))
    finally:
        torch.set_num_threads(previous)
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_what_one_process_trains_on_the_global_batch(runs, strategy):
    distributed, single = _weights(runs[strategy]), _weights(runs["single"])
    assert sorted(distributed) == sorted(single)
    for key in single:
        torch.testing.assert_close(
            distributed[key], single[key], rtol=0, atol=TOLERANCE, msg=lambda m, k=key: f"{k}: {m}"
        )
    assert int(distributed["model.mask_draws"]) == STEPS
    # The exported encoder is the full (gathered) one even when the run was sharded.
    exported = load_file(str(runs[strategy] / "ct_encoder.safetensors"))
    for key, value in exported.items():
        assert torch.equal(value, distributed[f"model.encoders.ct.{key}"]), key


@pytest.mark.slow
def test_the_comparison_tells_different_global_batches_apart(runs):
    half, single = _weights(runs["single_half_batch"]), _weights(runs["single"])
    assert max(float((half[key] - single[key]).abs().max()) for key in single) > 100 * TOLERANCE
