"""Issue-6 losses under two real gloo processes: value and DDP-averaged gradients equal the single-process loss on the
concatenated batch (soft-label, CWCL, multi-positive, FILIP, token alignment, prototypes, Symile, GRAM, and the
tiled paths of clip and soft_label). Labels, patient keys, weight embeddings and tokens are gathered by the losses.

One spawn runs every scenario; rows 0-3 live on rank 0, rows 4-7 on rank 1, masks differ across ranks.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from medclip.losses import build_loss
from tests.distributed_helpers import finish_group, init_file_store_group

WORLD, GLOBAL_BATCH, TOKENS = 2, 8, 3
LOCAL_BATCH = GLOBAL_BATCH // WORLD
INPUT_DIM, EMBED_DIM = 5, 4
MASKS = {
    "ct": [1, 1, 0, 1, 1, 0, 1, 1],
    "report": [1, 1, 1, 1, 0, 1, 1, 1],
    "ecg": [0, 1, 1, 1, 1, 1, 0, 1],
}
PATIENTS = [0, 1, 0, 2, 1, 3, 3, 0]  # studies of one patient on both ranks
SCENARIOS: dict[str, tuple[dict, list[str]]] = {
    "soft_label": ({"soft_label": {"temperature": 0.5}}, ["ct", "report", "ecg"]),
    "soft_label_tiled": ({"soft_label": {"temperature": 0.5, "tiled_above": 0, "tile_size": 3}}, ["ct", "report"]),
    "clip_tiled": ({"clip": {"tiled_above": 0, "tile_size": 3}}, ["ct", "report", "ecg"]),
    "cwcl": ({"cwcl": {"tiled_above": 0, "tile_size": 2}}, ["ct", "report"]),
    "multi_positive": ({"multi_positive": 1.0}, ["ct", "report"]),
    "filip": ({"filip": {"block_elements": 40}}, ["ct", "report", "ecg"]),
    "token": ({"token": {"chunk_size": 2}}, ["ct", "report"]),
    "prototype": ({"prototype": {"embed_dim": EMBED_DIM, "num_prototypes": 3, "epsilon": 0.5}}, ["ct", "report"]),
    "symile": ({"symile": 1.0}, ["ct", "report", "ecg"]),
    "gram": ({"gram": {"anchor": "report"}}, ["ct", "report", "ecg"]),
    "combined": (
        {"clip": 1.0, "soft_label": 1.0, "token": 0.5, "prototype": {"weight": 0.2, "embed_dim": 4}},
        ["ct", "report"],
    ),
}


def make_inputs() -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(0)
    data = {
        f"x/{name}": torch.randn(GLOBAL_BATCH, INPUT_DIM, generator=generator, dtype=torch.float64) for name in MASKS
    }
    data.update({f"mask/{name}": torch.tensor(values, dtype=torch.bool) for name, values in MASKS.items()})
    data["weight"] = torch.randn(EMBED_DIM, INPUT_DIM, generator=generator, dtype=torch.float64)
    data["token_weight"] = torch.randn(TOKENS * EMBED_DIM, INPUT_DIM, generator=generator, dtype=torch.float64)
    labels = (torch.rand(GLOBAL_BATCH, 3, generator=generator) < 0.5).double()
    labels[torch.rand(GLOBAL_BATCH, 3, generator=generator) < 0.3] = float("nan")
    data["labels"] = labels
    data["patients"] = torch.tensor(PATIENTS, dtype=torch.long)
    data["log_scale"] = torch.tensor(1.5, dtype=torch.float64)
    return data


class Trainable(nn.Module):
    """Shared linear "encoders" (pooled + tokens), the log logit scale and the losses, as a trainer holds them."""

    def __init__(self, data: dict[str, Tensor], spec: dict) -> None:
        super().__init__()
        self.linear = nn.Linear(INPUT_DIM, EMBED_DIM, bias=False, dtype=torch.float64)
        self.token_linear = nn.Linear(INPUT_DIM, TOKENS * EMBED_DIM, bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.linear.weight.copy_(data["weight"])
            self.token_linear.weight.copy_(data["token_weight"])
        self.log_scale = nn.Parameter(data["log_scale"].clone())
        self.loss = build_loss(spec).double()

    def forward(self, data: dict[str, Tensor], names: list[str], rows: slice) -> dict[str, Tensor]:
        features, tokens, token_masks, masks = {}, {}, {}, {}
        for name in names:
            x = data[f"x/{name}"][rows]
            features[name] = F.normalize(self.linear(x), dim=-1)  # (B, D)
            tokens[name] = F.normalize(self.token_linear(x).reshape(-1, TOKENS, EMBED_DIM), dim=-1)  # (B, T, D)
            token_mask = torch.ones(x.shape[0], TOKENS, dtype=torch.bool)
            token_mask[:, 2] = x[:, 0] > 0  # some padded tokens
            token_masks[name], masks[name] = token_mask, data[f"mask/{name}"][rows]
        return self.loss(
            features=features,
            tokens=tokens,
            token_masks=token_masks,
            masks=masks,
            labels=data["labels"][rows],
            patient_ids=data["patients"][rows],
            logit_scale=self.log_scale.exp(),
        )


def run_scenarios(data: dict[str, Tensor], rows: slice, average: bool) -> dict[str, Tensor]:
    results: dict[str, Tensor] = {}
    for scenario, (spec, names) in SCENARIOS.items():
        module = Trainable(data, spec)
        outputs = module(data, names, rows)
        outputs["loss"].backward()
        for name, param in module.named_parameters():
            grad = param.grad.detach().clone() if param.grad is not None else torch.zeros_like(param)
            if average:  # what DDP (model) and the trainer (loss parameters) do: SUM / world
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
    tmp_dir = tmp_path_factory.mktemp("loss_families_distributed")
    data = make_inputs()
    save_file(data, str(tmp_dir / "inputs.safetensors"))
    mp.spawn(worker, args=(str(tmp_dir),), nprocs=WORLD, join=True)
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
    assert (
        reference[f"{scenario}/grad/linear.weight"].abs().sum()
        + reference[f"{scenario}/grad/token_linear.weight"].abs().sum()
        > 0
    )
