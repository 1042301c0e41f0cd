"""Process-group set-up for ``torchrun`` (single node or multi-node) and device/precision choice.

Under ``torchrun`` the environment carries RANK, LOCAL_RANK and WORLD_SIZE; we initialise the default process group
from it (NCCL on GPUs, gloo on CPU). A plain ``python``/``medclip`` call is a single process and needs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import autocast_context  # noqa: F401  (re-exported: the training loop's precision)


@dataclass
class Runtime:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(device: str = "auto") -> Runtime:
    """Initialise torch.distributed when launched by torchrun and pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch_device.type == "cuda" else "gloo")
    return Runtime(rank=rank, local_rank=local_rank, world_size=world_size, device=torch_device)


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()
