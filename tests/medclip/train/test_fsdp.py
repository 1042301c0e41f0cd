"""FSDP2 (``train.parallel=fsdp``) on real 2-process gloo groups, through ``recipes.pretrain.pretrain`` (as torchrun).

``fully_shard`` runs on CPU with gloo in this torch, so the sharded path itself is tested, not a stand-in:

- 2 FSDP processes with batch B each == 1 process with batch 2B (weights equal within 1e-5), as for DDP;
- the same with gradient accumulation (FSDP's ``set_requires_gradient_sync(False)`` on the first micro-step);
- the checkpoint holds the full model and full optimizer state (no shard files): a 2-step FSDP checkpoint resumed on
  1 plain process for 2 more steps == 4 steps straight; a 2-step 1-process checkpoint resumed with FSDP on 2 processes
  == 4 steps straight (the full optimizer state is re-sharded); ``load_model`` reads the FSDP checkpoint for inference.
- a modality absent from one rank's whole micro-batch is refused on every rank with a reason code (no hang).

The helpers (config, spawning, weight comparison) are those of tests/medclip/train/test_distributed.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

from medclip.types import EncoderOutput
from tests.distributed_helpers import finish_group, free_ports, set_torchrun_environment, spawn_and_wait
from tests.medclip.train.test_distributed import (
    CLIP,
    GLOBAL_BATCH,
    LOCAL_BATCH,
    STEPS,
    TOLERANCE,
    WORLD,
    assert_same_weights,
    experiment,
    max_difference,
    run_pretrain,
    trainer_state,
    weights,
)

SPAWN_DEADLINE_S = 150
PARTLY_ABSENT = "partly_absent"
CHECKPOINT_FILES = {
    "model.safetensors",
    "config.yaml",
    "preprocess.json",
    "trainer_state.json",
    "optimizer.safetensors",
    "data_provenance.json",
    "README.md",  # the model card
}


def fsdp(config: dict[str, Any], **train: Any) -> dict[str, Any]:
    return {**config, "train": {**config["train"], "parallel": "fsdp", **train}}


def worker(rank: int, jobs: list[tuple[str, dict[str, Any], int]], results_dir: str) -> None:
    """One torchrun-style process: the variables torchrun sets, then ``pretrain(config)`` per job."""
    set_torchrun_environment(rank, WORLD)
    for name, config, port in jobs:
        os.environ["MASTER_PORT"] = str(port)
        if name == PARTLY_ABSENT:
            outcome = forward_with_a_modality_absent_on_rank_one(rank)
            Path(results_dir, f"{name}_rank{rank}.json").write_text(json.dumps(outcome))
            continue
        result = run_pretrain(config)
        metrics = {key: float(value) for key, value in result.metrics.items()}
        Path(results_dir, f"{name}_rank{rank}.json").write_text(json.dumps(metrics))


class VectorEncoder(nn.Module):
    """A real (small) encoder with a block list, so FSDP shards it the way it shards transformer blocks."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.output_dim = width
        self.blocks = nn.ModuleList([nn.Linear(width, width), nn.Linear(width, width)])

    def forward(self, inputs: torch.Tensor) -> EncoderOutput:
        hidden = inputs
        for block in self.blocks:
            hidden = torch.tanh(block(hidden))  # (B, D)
        return EncoderOutput(pooled=hidden, tokens=None, token_mask=None)


def forward_with_a_modality_absent_on_rank_one(rank: int) -> dict[str, str]:
    """FSDP forward with both modalities everywhere, then with "b" absent from rank 1's whole micro-batch."""
    from medclip.model import ContrastiveModel, ProjectionHead
    from medclip.train.launch import Runtime
    from medclip.train.parallel import ParallelError, build_parallel

    dist.init_process_group("gloo")
    try:
        torch.manual_seed(0)
        encoders = {"a": VectorEncoder(), "b": VectorEncoder()}
        model = ContrastiveModel(encoders, {name: ProjectionHead(4, 4) for name in encoders})
        wrapped = build_parallel("fsdp", Runtime(rank=rank, world_size=WORLD)).wrap(model)
        batch = {"a": torch.randn(3, 4), "b": torch.randn(3, 4), "a_mask": torch.ones(3, dtype=torch.bool)}
        wrapped({**batch, "b_mask": torch.ones(3, dtype=torch.bool)})["features"]["b"].sum().backward()
        outcome = {"both_present": "ran"}
        try:
            wrapped({**batch, "b_mask": torch.full((3,), rank == 0)})
            outcome["partly_absent"] = "ran"
        except ParallelError as error:
            outcome["partly_absent"] = str(error)
        return outcome
    finally:
        finish_group()


def spawn_workers(jobs: list[tuple[str, dict[str, Any]]], results_dir: Path) -> None:
    ports = free_ports(len(jobs))
    jobs_with_ports = [(name, config, port) for (name, config), port in zip(jobs, ports, strict=True)]
    spawn_and_wait(worker, (jobs_with_ports, str(results_dir)), WORLD, SPAWN_DEADLINE_S, "FSDP")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    from recipes.quickstart import Config, write_dataset

    root = tmp_path_factory.mktemp("fsdp")
    manifest, _, _ = write_dataset(Config(), root / "data")
    names = ["clip_1p", "clip_1p_2steps", "accum_1p", "fsdp_2p", "fsdp_2p_2steps", "fsdp_accum_2p"]
    names += ["fsdp_resumed_1p", "resumed_fsdp_2p"]
    out = {name: root / name for name in names}
    # Single-process references first: one of them is the checkpoint the FSDP processes resume from.
    run_pretrain(experiment(manifest, out["clip_1p"], CLIP, GLOBAL_BATCH))
    run_pretrain(experiment(manifest, out["clip_1p_2steps"], CLIP, GLOBAL_BATCH, steps=2))
    accumulate = experiment(manifest, out["accum_1p"], CLIP, LOCAL_BATCH)
    run_pretrain({**accumulate, "train": {**accumulate["train"], "grad_accum": 2}})
    resume_from_1p = out["clip_1p_2steps"] / "checkpoint"
    jobs = [
        (PARTLY_ABSENT, {}),
        ("fsdp_2p", fsdp(experiment(manifest, out["fsdp_2p"], CLIP, LOCAL_BATCH))),
        ("fsdp_2p_2steps", fsdp(experiment(manifest, out["fsdp_2p_2steps"], CLIP, LOCAL_BATCH, steps=2))),
        ("fsdp_accum_2p", fsdp(experiment(manifest, out["fsdp_accum_2p"], CLIP, LOCAL_BATCH // 2), grad_accum=2)),
        (
            "resumed_fsdp_2p",
            fsdp(experiment(manifest, out["resumed_fsdp_2p"], CLIP, LOCAL_BATCH, resume=resume_from_1p)),
        ),
    ]
    spawn_workers(jobs, root)
    resume_from_fsdp = out["fsdp_2p_2steps"] / "checkpoint"
    run_pretrain(experiment(manifest, out["fsdp_resumed_1p"], CLIP, GLOBAL_BATCH, resume=resume_from_fsdp))
    out["metrics"] = root
    return out


def test_fsdp_on_two_processes_equals_one_process_with_the_same_global_batch(runs):
    assert_same_weights(weights(runs["fsdp_2p"]), weights(runs["clip_1p"]))
    state = trainer_state(runs["fsdp_2p"])
    assert (state["world_size"], state["step"], state["consumed_batches"]) == (WORLD, STEPS, STEPS)
    per_rank = [json.loads((runs["metrics"] / f"fsdp_2p_rank{rank}.json").read_text()) for rank in range(WORLD)]
    assert per_rank[0]["loss"] == pytest.approx(per_rank[1]["loss"], abs=1e-6)
    assert per_rank[0]["grad_norm"] == pytest.approx(per_rank[1]["grad_norm"], abs=1e-6)  # sharded + replicated


def test_fsdp_gradient_accumulation_equals_one_process(runs):
    """2 micro-steps of 2 x B/2 rows (sync only on the last) == 1 process, 2 micro-steps of B rows."""
    assert_same_weights(weights(runs["fsdp_accum_2p"]), weights(runs["accum_1p"]))
    assert max_difference(weights(runs["accum_1p"]), weights(runs["clip_1p"])) > 100 * TOLERANCE


def test_fsdp_checkpoint_is_full_and_unsharded(runs):
    checkpoint = runs["fsdp_2p"] / "checkpoint"
    assert {path.name for path in checkpoint.iterdir()} == CHECKPOINT_FILES
    fsdp_weights, plain_weights = weights(runs["fsdp_2p"]), weights(runs["clip_1p"])
    assert {key: value.shape for key, value in fsdp_weights.items()} == {
        key: value.shape for key, value in plain_weights.items()
    }
    from safetensors.torch import load_file

    fsdp_moments = load_file(str(checkpoint / "optimizer.safetensors"))
    plain_moments = load_file(str(runs["clip_1p"] / "checkpoint" / "optimizer.safetensors"))
    assert sorted(fsdp_moments) == sorted(plain_moments)
    for key, value in plain_moments.items():
        torch.testing.assert_close(fsdp_moments[key], value, rtol=0, atol=TOLERANCE)


def test_fsdp_checkpoint_resumes_on_one_plain_process(runs):
    """2 FSDP steps on 2 processes + 2 steps on 1 process == 4 steps on 1 process (weights and optimizer moments)."""
    assert max_difference(weights(runs["fsdp_2p_2steps"]), weights(runs["clip_1p"])) > 100 * TOLERANCE
    assert_same_weights(weights(runs["fsdp_resumed_1p"]), weights(runs["clip_1p"]))
    assert trainer_state(runs["fsdp_resumed_1p"])["step"] == STEPS


def test_one_process_checkpoint_resumes_with_fsdp_on_two_processes(runs):
    """The full optimizer state is re-sharded onto the FSDP ranks: 2 + 2 steps == 4 steps straight."""
    assert_same_weights(weights(runs["resumed_fsdp_2p"]), weights(runs["clip_1p"]))
    state = trainer_state(runs["resumed_fsdp_2p"])
    assert (state["world_size"], state["step"]) == (WORLD, STEPS)


def test_fsdp_checkpoint_loads_for_inference(runs):
    from medclip import load_model

    model = load_model(runs["fsdp_2p"] / "checkpoint")
    saved = weights(runs["fsdp_2p"])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[f"model.{key}"], rtol=0, atol=0)
    assert set(model.preprocess.modalities) == {"expression", "report"}


def test_unknown_parallel_strategy_is_refused_by_name(small_experiment):
    from medclip.registry import RegistryError
    from medclip.train.launch import Runtime
    from medclip.train.parallel import build_parallel

    with pytest.raises(RegistryError, match="parallel strategy"):
        build_parallel("zero3", Runtime())
    assert build_parallel("fsdp", Runtime()).name == "single"  # one process: nothing to shard


def test_fsdp_refuses_a_modality_absent_from_one_ranks_micro_batch_on_every_rank(runs):
    """Instead of a hang in FSDP's all-gather, every rank raises the same reason-coded error."""
    outcomes = [json.loads((runs["metrics"] / f"{PARTLY_ABSENT}_rank{rank}.json").read_text()) for rank in range(WORLD)]
    for outcome in outcomes:
        assert outcome["both_present"] == "ran"
        assert "partly_absent_modality" in outcome["partly_absent"] and "modality b" in outcome["partly_absent"]
