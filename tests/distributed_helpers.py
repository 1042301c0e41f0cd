"""What the multi-process tests share: free ports, torchrun-style environments, file-store process groups, and
spawning processes that fail the test (never hang it) when they do not finish.

A plain module (not a test file): the test modules import it, and so do their spawned worker processes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on the loopback interface (all bound at once, so none is handed out twice)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def set_torchrun_environment(rank: int, world: int) -> None:
    """One thread, and the variables torchrun sets (MASTER_PORT is set per job by the caller)."""
    torch.set_num_threads(1)
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1"}
    )


def init_file_store_group(tmp_dir: str, rank: int, world: int) -> None:
    """One thread, and a gloo process group over a file store in ``tmp_dir``.

    The 60 s timeout makes a mismatched collective fail the test instead of hanging it.
    """
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(tmp_dir, 'store')}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )


def finish_group() -> None:
    """Leave the process group together: a gloo rank that tears down while its peer still completes the last
    collective can make that peer fail ("connection closed by peer"), a flake under load."""
    dist.barrier()
    dist.destroy_process_group()


def spawn_and_wait(
    worker: Callable[..., None], args: tuple[Any, ...], world: int, deadline_s: float, what: str
) -> None:
    """Run ``worker(rank, *args)`` on ``world`` fresh processes; kill them and fail the test past ``deadline_s``."""
    context = mp.start_processes(worker, args=args, nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + deadline_s
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            pytest.fail(f"the {world} {what} processes did not finish within {deadline_s} s")
