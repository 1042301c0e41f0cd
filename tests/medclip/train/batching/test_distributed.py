"""Batch composition on 2 real gloo processes: the union of the ranks' batches is the single-process global batch.

Each process holds the same trained model (the tiny checkpoint) and the same training rows; for every kind it takes
its slice of batches of ``LOCAL_BATCH`` rows; the hard-negative refresh embeds half the rows per rank, all-gathers
the embeddings and broadcasts rank 0's table. One process with batches of ``2 * LOCAL_BATCH`` must draw the same rows.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from medclip.train.batching import BatchingConfig, build_batching
from medclip.train.launch import Runtime
from tests.distributed_helpers import finish_group, init_file_store_group, spawn_and_wait
from tests.medclip.train.batching.model_rows import model_and_training_rows

pytestmark = pytest.mark.slow

WORLD = 2
LOCAL_BATCH = 8
BATCHES = 12
KINDS = ["random", "site_stratified", "same_site", "hard_negative"]


def compose(kind: str, model, dataset, plugins, rank: int, world: int) -> tuple[list[list[int]], list | None]:
    config = BatchingConfig(kind=kind, candidates=4, neighbours_per_seed=3)
    composer = build_batching(config, dataset, LOCAL_BATCH * WORLD // world, seed=11, rank=rank, world_size=world)
    if kind == "hard_negative":
        runtime = Runtime(rank=rank, local_rank=rank, world_size=world, device=torch.device("cpu"))
        composer.refresh(model, plugins, step=0, consumed=0, runtime=runtime)
    table = composer.table.tolist() if kind == "hard_negative" else None
    return list(itertools.islice(composer.batches(0), BATCHES)), table


def worker(rank: int, checkpoint: str, manifest: str, out: str) -> None:
    init_file_store_group(out, rank, WORLD)
    model, dataset, plugins = model_and_training_rows(Path(checkpoint), Path(manifest))
    results = {kind: compose(kind, model, dataset, plugins, rank, WORLD) for kind in KINDS}
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    finish_group()


def test_the_ranks_batches_together_are_the_single_process_global_batches(tiny_checkpoint, pbmc_manifest, tmp_path):
    spawn_and_wait(worker, (str(tiny_checkpoint), str(pbmc_manifest), str(tmp_path)), WORLD, 240, "composition")
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    model, dataset, plugins = model_and_training_rows(tiny_checkpoint, pbmc_manifest)
    for kind in KINDS:
        whole, table = compose(kind, model, dataset, plugins, rank=0, world=1)
        if kind == "hard_negative":
            assert ranks[0][kind][1] == ranks[1][kind][1], "every rank must compose from the same table"
            assert ranks[0][kind][1] == table, "the sharded refresh must give the single-process table"
        slices = [ranks[rank][kind][0] for rank in range(WORLD)]
        assert all(len(part) == LOCAL_BATCH for rank_batches in slices for part in rank_batches)
        assert [a + b for a, b in zip(*slices, strict=True)] == whole, kind
