"""The ``distill`` loss under two real gloo processes: on every rank the value, and the parameter gradients after
DDP-style averaging, equal the single-process loss on the concatenated batch (the teacher's embeddings are gathered
with the features, so every row's targets span the global batch).

Rows 0-3 live on rank 0, rows 4-7 on rank 1; masks differ across ranks; the teacher is a fixed linear map of its own.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from medclip.losses import build_loss
from tests.distributed_helpers import finish_group, init_file_store_group, spawn_and_wait

pytestmark = pytest.mark.slow

WORLD, GLOBAL_BATCH = 2, 8
LOCAL_BATCH = GLOBAL_BATCH // WORLD
INPUT_DIM, EMBED_DIM, TEACHER_DIM = 5, 4, 3
MASKS = {
    "ct": [1, 1, 0, 1, 1, 0, 1, 1],
    "report": [1, 1, 1, 1, 0, 1, 1, 1],
    "ecg": [0, 1, 1, 1, 0, 0, 0, 0],  # no valid row on rank 1
}
SCENARIOS: dict[str, tuple[dict, list[str]]] = {
    "distill": ({"distill": 1.0}, ["ct", "report", "ecg"]),
    "fixed_temperature_anchor": ({"distill": {"temperature": 0.2, "anchor": "report"}}, ["ct", "report", "ecg"]),
    "tiled": ({"distill": {"tiled_above": 0, "tile_size": 3}}, ["ct", "report"]),
    "with_clip": ({"clip": 0.6, "distill": 0.4}, ["ct", "report"]),
}


def make_inputs() -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(0)
    data = {
        f"x/{name}": torch.randn(GLOBAL_BATCH, INPUT_DIM, generator=generator, dtype=torch.float64) for name in MASKS
    }
    data.update({f"mask/{name}": torch.tensor(values, dtype=torch.bool) for name, values in MASKS.items()})
    data["weight"] = torch.randn(EMBED_DIM, INPUT_DIM, generator=generator, dtype=torch.float64)
    data["teacher_weight"] = torch.randn(TEACHER_DIM, INPUT_DIM, generator=generator, dtype=torch.float64)
    data["log_scale"] = torch.tensor(1.5, dtype=torch.float64)
    return data


class Trainable(nn.Module):
    """A shared linear "encoder", the log logit scale and the losses, as a trainer holds them; a fixed teacher."""

    def __init__(self, data: dict[str, Tensor], spec: dict) -> None:
        super().__init__()
        self.linear = nn.Linear(INPUT_DIM, EMBED_DIM, bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.linear.weight.copy_(data["weight"])
        self.log_scale = nn.Parameter(data["log_scale"].clone())
        self.loss = build_loss(spec).double()
        self.teacher_weight = data["teacher_weight"]

    def forward(self, data: dict[str, Tensor], names: list[str], rows: slice) -> dict[str, Tensor]:
        features = {name: F.normalize(self.linear(data[f"x/{name}"][rows]), dim=-1) for name in names}  # (B, D)
        teacher = {name: F.normalize(data[f"x/{name}"][rows] @ self.teacher_weight.T, dim=-1) for name in names}
        masks = {name: data[f"mask/{name}"][rows] for name in names}
        return self.loss(features=features, masks=masks, logit_scale=self.log_scale.exp(), teacher_features=teacher)


def run_scenarios(data: dict[str, Tensor], rows: slice, average: bool) -> dict[str, Tensor]:
    results: dict[str, Tensor] = {}
    for scenario, (spec, names) in SCENARIOS.items():
        module = Trainable(data, spec)
        outputs = module(data, names, rows)
        outputs["loss"].backward()
        for name, param in module.named_parameters():
            grad = param.grad.detach().clone() if param.grad is not None else torch.zeros_like(param)
            if average:  # what DDP does: SUM / world
                dist.all_reduce(grad)
                grad /= WORLD
            results[f"{scenario}/grad/{name}"] = grad
        for key, value in outputs.items():
            if "top1" not in key:  # top-1 is a per-process metric by design
                results[f"{scenario}/value/{key}"] = value.detach().reshape(1)
    return results


def worker(rank: int, tmp_dir: str) -> None:
    init_file_store_group(tmp_dir, rank, WORLD)
    try:
        data = load_file(os.path.join(tmp_dir, "inputs.safetensors"))
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        save_file(run_scenarios(data, rows, average=True), os.path.join(tmp_dir, f"rank{rank}.safetensors"))
    finally:
        finish_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
    tmp_dir = tmp_path_factory.mktemp("distill_distributed")
    data = make_inputs()
    save_file(data, str(tmp_dir / "inputs.safetensors"))
    spawn_and_wait(worker, (str(tmp_dir),), WORLD, deadline_s=300, what="distill loss")
    per_rank = [load_file(str(tmp_dir / f"rank{rank}.safetensors")) for rank in range(WORLD)]
    return per_rank, run_scenarios(data, slice(0, GLOBAL_BATCH), average=False)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_two_processes_equal_the_concatenated_batch(results, scenario):
    per_rank, reference = results
    keys = sorted(key for key in reference if key.startswith(f"{scenario}/"))
    for rank, values in enumerate(per_rank):
        assert sorted(key for key in values if key.startswith(f"{scenario}/")) == keys, rank
        for key in keys:
            torch.testing.assert_close(values[key], reference[key], rtol=1e-9, atol=1e-12, msg=f"rank {rank}: {key}")
    assert reference[f"{scenario}/value/loss"].item() > 0
    assert reference[f"{scenario}/grad/linear.weight"].abs().sum() > 0
    if scenario == "distill":
        assert f"{scenario}/value/distill/report-ecg" in reference  # pairs only on rank 0, still counted on both
