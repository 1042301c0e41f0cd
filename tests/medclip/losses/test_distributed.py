"""The distributed exactness contract of the losses, with two real gloo processes.

A fixed global batch of 8 rows is split in halves over 2 processes; a small shared ``nn.Linear`` produces every
modality's features. On every rank the loss value must equal the single-process loss on the concatenated batch, and
the parameter gradients after DDP-style averaging (all-reduce SUM / world, and real DistributedDataParallel) must
equal the single-process gradients. The masks differ across ranks, one rank has no valid row for some pairs, one
pair has no valid row anywhere, and one batch has nothing to contrast at all (which must not hang).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from medclip.losses import build_loss, clip_loss
from tests.distributed_helpers import finish_group, init_file_store_group

WORLD = 2
GLOBAL_BATCH = 8
LOCAL_BATCH = GLOBAL_BATCH // WORLD
INPUT_DIM, EMBED_DIM = 5, 4
# rows 0-3 live on rank 0, rows 4-7 on rank 1
MASKS = {
    "ct": [1, 1, 0, 1, 1, 0, 1, 1],
    "report": [1, 1, 1, 1, 0, 1, 1, 1],
    "expression": [0, 1, 1, 0, 0, 0, 0, 0],  # pairs with it have no valid row on rank 1
    "slide": [0, 0, 1, 0, 0, 0, 0, 0],  # ct-slide has no valid row on any rank; report-slide only on rank 0
    "ecg": [0, 0, 0, 0, 0, 0, 0, 0],  # nothing to contrast with ecg anywhere
}
BIAS = {"init_logit_bias": -3.0}  # closer to 0 than the paper's -10 so that every gradient is clearly non-zero
SCENARIOS: dict[str, tuple[dict, list[str]]] = {
    "clip_pair": ({"clip": 1.0}, ["ct", "report"]),
    "siglip_pair": ({"siglip": BIAS}, ["ct", "report"]),
    "clip_three_all_pairs": ({"clip": 1.0}, ["ct", "report", "expression"]),
    "siglip_anchor_report": ({"siglip": {"anchor": "report", **BIAS}}, ["ct", "report", "expression"]),
    "combined_with_empty_pair": ({"clip": 1.0, "siglip": {"weight": 0.5, **BIAS}}, ["ct", "report", "slide"]),
    "nothing_to_contrast": ({"clip": 1.0, "siglip": {"weight": 0.5, **BIAS}}, ["ct", "ecg"]),
}
DDP_SPEC = {"clip": 1.0, "siglip": {"weight": 0.5, **BIAS}}
DDP_STEPS = [["ct", "report", "expression"], ["ct", "ecg"], ["ct", "report", "slide"]]


def make_inputs() -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(0)
    data = {
        f"x/{name}": torch.randn(GLOBAL_BATCH, INPUT_DIM, generator=generator, dtype=torch.float64) for name in MASKS
    }
    data.update({f"mask/{name}": torch.tensor(values, dtype=torch.bool) for name, values in MASKS.items()})
    data["weight"] = torch.randn(EMBED_DIM, INPUT_DIM, generator=generator, dtype=torch.float64)
    data["bias"] = torch.randn(EMBED_DIM, generator=generator, dtype=torch.float64)
    data["log_scale"] = torch.tensor(2.0, dtype=torch.float64)  # logit scale e^2 ~ 7.4
    return data


class Trainable(nn.Module):
    """The shared linear "encoder", the learnable log logit scale and the losses, as a trainer would hold them."""

    def __init__(self, data: dict[str, Tensor], spec: dict) -> None:
        super().__init__()
        self.linear = nn.Linear(INPUT_DIM, EMBED_DIM, dtype=torch.float64)
        with torch.no_grad():
            self.linear.weight.copy_(data["weight"])
            self.linear.bias.copy_(data["bias"])
        self.log_scale = nn.Parameter(data["log_scale"].clone())
        self.loss = build_loss(spec).double()

    def forward(self, inputs: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        features = {name: F.normalize(self.linear(x), dim=-1) for name, x in inputs.items()}  # (B, D) each
        return self.loss(features=features, masks=masks, logit_scale=self.log_scale.exp(), labels=None)


def batch_rows(data: dict[str, Tensor], names: list[str], rows: slice) -> tuple[dict, dict]:
    return {name: data[f"x/{name}"][rows] for name in names}, {name: data[f"mask/{name}"][rows] for name in names}


def logged_values(outputs: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Every global entry (losses, per-pair values, bias); top-1 accuracy is per process by design."""
    return {f"{prefix}/value/{key}": value.detach().reshape(1) for key, value in outputs.items() if "top1" not in key}


def gradients(module: nn.Module, prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}/grad/{name}": param.grad.detach().clone() for name, param in module.named_parameters()}


def run_scenarios(data: dict[str, Tensor], rows: slice, average_gradients: bool) -> dict[str, Tensor]:
    results: dict[str, Tensor] = {}
    for scenario, (spec, names) in SCENARIOS.items():
        module = Trainable(data, spec)
        outputs = module(*batch_rows(data, names, rows))
        outputs["loss"].backward()
        if average_gradients:  # what DistributedDataParallel does: SUM over ranks / world
            for param in module.parameters():
                dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
                param.grad /= WORLD
        results.update(logged_values(outputs, scenario))
        results.update(gradients(module, scenario))
    return results


def run_ddp_steps(data: dict[str, Tensor], rows: slice, use_ddp: bool) -> dict[str, Tensor]:
    results: dict[str, Tensor] = {}
    module = Trainable(data, DDP_SPEC)
    wrapped = DistributedDataParallel(module) if use_ddp else module
    for step, names in enumerate(DDP_STEPS):
        module.zero_grad(set_to_none=True)
        outputs = wrapped(*batch_rows(data, names, rows))
        outputs["loss"].backward()
        results.update(logged_values(outputs, f"ddp{step}"))
        results.update(gradients(module, f"ddp{step}"))
    return results


def worker(rank: int, tmp_dir: str) -> None:
    init_file_store_group(tmp_dir, rank, WORLD)
    try:
        data = load_file(os.path.join(tmp_dir, "inputs.safetensors"))
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        results = run_scenarios(data, rows, average_gradients=True)
        results.update(run_ddp_steps(data, rows, use_ddp=True))
        save_file(results, os.path.join(tmp_dir, f"rank{rank}.safetensors"))
        # unequal local batches: every rank must get the same clear error (and no hang)
        features = F.normalize(data["x/ct"][rows][: LOCAL_BATCH - rank], dim=-1)
        try:
            clip_loss(features, features, torch.tensor(1.0, dtype=torch.float64))
            message = ""
        except ValueError as error:
            message = str(error)
        Path(tmp_dir, f"rank{rank}_unequal.json").write_text(json.dumps({"message": message}))
    finally:
        finish_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> tuple[list[dict[str, Tensor]], list[str], dict[str, Tensor]]:
    tmp_dir = tmp_path_factory.mktemp("losses_distributed")
    data = make_inputs()
    save_file(data, str(tmp_dir / "inputs.safetensors"))
    mp.spawn(worker, args=(str(tmp_dir),), nprocs=WORLD, join=True)
    per_rank = [load_file(str(tmp_dir / f"rank{rank}.safetensors")) for rank in range(WORLD)]
    messages = [json.loads((tmp_dir / f"rank{rank}_unequal.json").read_text())["message"] for rank in range(WORLD)]
    reference = run_scenarios(data, slice(0, GLOBAL_BATCH), average_gradients=False)
    reference.update(run_ddp_steps(data, slice(0, GLOBAL_BATCH), use_ddp=False))
    return per_rank, messages, reference


def assert_same(per_rank: list[dict[str, Tensor]], reference: dict[str, Tensor], prefix: str) -> None:
    keys = sorted(key for key in reference if key.startswith(f"{prefix}/"))
    assert keys, prefix
    for rank, results in enumerate(per_rank):
        assert sorted(key for key in results if key.startswith(f"{prefix}/")) == keys, (prefix, rank)
        for key in keys:
            torch.testing.assert_close(results[key], reference[key], rtol=1e-10, atol=1e-12, msg=f"rank {rank}: {key}")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_value_and_averaged_gradients_equal_single_process(two_process_results, scenario):
    per_rank, _, reference = two_process_results
    assert_same(per_rank, reference, scenario)
    grads = {key: value for key, value in reference.items() if key.startswith(f"{scenario}/grad/")}
    if scenario == "nothing_to_contrast":
        assert reference[f"{scenario}/value/loss"].item() == 0.0
        assert all(torch.all(grad == 0) for grad in grads.values())  # zero, but present: DDP gets every gradient
    else:
        assert reference[f"{scenario}/value/loss"].item() > 0
        for key in (f"{scenario}/grad/linear.weight", f"{scenario}/grad/log_scale"):
            assert grads[key].abs().sum() > 0, key


def test_pair_without_rows_anywhere_is_skipped_on_every_rank(two_process_results):
    per_rank, _, reference = two_process_results
    for results in [*per_rank, reference]:
        assert "combined_with_empty_pair/value/clip/ct-slide" not in results
        assert "combined_with_empty_pair/value/clip/report-slide" in results  # valid rows on rank 0 only


@pytest.mark.parametrize("step", range(len(DDP_STEPS)))
def test_real_distributed_data_parallel_steps(two_process_results, step):
    per_rank, _, reference = two_process_results
    assert_same(per_rank, reference, f"ddp{step}")


def test_unequal_local_batches_raise_clearly_on_every_rank(two_process_results):
    _, messages, _ = two_process_results
    for message in messages:
        assert "same shape (equal local batch sizes)" in message and "drop_last=True" in message
        assert "[(4,), (3,)]" in message
