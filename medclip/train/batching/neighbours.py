"""The neighbour table behind ``hard_negative`` batches: embed every training row, then, per row, the rows whose
embedding in another modality is most similar to its own (the negatives the model confuses most with its pair).

Distributed: rank r embeds dataset positions r, r + W, ...; the shards are all-gathered, every rank holds all
embeddings, and the table rank 0 computes is broadcast, so every rank composes the same global batches whatever the
floating-point order of its own matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Dataset

from ...data import SkipSummary
from ...device import autocast_context
from ...embedding import LoaderOptions, embed_dataset

SIMILARITY_CHUNK_ELEMENTS = 2**24  # (rows x N) similarity block: 64 MB of float32 per block and modality pair


def embed_training_rows(
    model: torch.nn.Module,
    dataset: Dataset,
    modalities: Sequence[str],
    runtime: Any,
    batch_size: int,
    precision: str = "fp32",
) -> tuple[dict[str, Tensor], dict[str, Tensor], int]:
    """Embed every row of ``dataset`` with ``model`` (eval mode, no gradient; the previous mode is restored).

    Returns:
        name -> (N, D) unit embeddings in dataset order (zero rows where missing or unreadable), name -> (N,) bool
        present, and how many rows could not be read (counted across ranks).
    """
    rank, world = (runtime.rank, runtime.world_size) if runtime is not None else (0, 1)
    device = runtime.device if runtime is not None else torch.device("cpu")
    position_of = {row_number: position for position, row_number in enumerate(dataset.row_numbers())}
    summary = SkipSummary()
    positions: list[int] = []
    embeddings: dict[str, list[np.ndarray]] = {name: [] for name in modalities}
    present: dict[str, list[np.ndarray]] = {name: [] for name in modalities}
    was_training = model.training
    try:
        with torch.no_grad(), autocast_context(precision, device):
            options = LoaderOptions(batch_size=batch_size, num_workers=0, progress=False)
            indices = list(range(rank, len(dataset), world))
            for rows in embed_dataset(model, dataset, modalities, summary, indices, options, "hard negatives"):
                positions.extend(position_of[int(row)] for row in rows.row_numbers)
                for name in modalities:
                    embeddings[name].append(rows.embeddings[name])
                    present[name].append(rows.present[name])
    finally:
        model.train(was_training)  # frozen towers keep their eval mode (medclip.nn.freeze)
    local_positions = torch.as_tensor(positions, dtype=torch.int64)  # (n,)
    local = {name: _stack(embeddings[name]) for name in modalities}  # (n, D)
    local_present = {name: torch.as_tensor(np.concatenate(present[name]) if present[name] else [], dtype=torch.bool)
                     for name in modalities}  # fmt: skip
    skipped = summary.total()
    if runtime is not None and runtime.distributed:
        local_positions, local, local_present, skipped = _gather(local_positions, local, local_present, skipped, device)
    width = max((value.shape[1] for value in local.values()), default=0)
    full = {name: torch.zeros(len(dataset), width) for name in modalities}  # (N, D)
    full_present = {name: torch.zeros(len(dataset), dtype=torch.bool) for name in modalities}  # (N,)
    for name in modalities:
        if len(local_positions):
            full[name][local_positions] = local[name].float()
            full_present[name][local_positions] = local_present[name]
    return full, full_present, skipped


def _stack(parts: list[np.ndarray]) -> Tensor:
    return torch.from_numpy(np.concatenate(parts)).float() if parts else torch.zeros(0, 0)


def _gather(
    positions: Tensor, embeddings: dict[str, Tensor], present: dict[str, Tensor], skipped: int, device: torch.device
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor], int]:
    """All ranks' shards, concatenated in rank order (padded to the largest shard for ``all_gather``)."""
    world = dist.get_world_size()
    width = max((value.shape[1] for value in embeddings.values()), default=0)
    sizes = torch.tensor([len(positions), width, skipped], dtype=torch.int64, device=device)
    gathered_sizes = [torch.zeros_like(sizes) for _ in range(world)]
    dist.all_gather(gathered_sizes, sizes)
    counts = [int(size[0]) for size in gathered_sizes]
    width = max(int(size[1]) for size in gathered_sizes)
    longest = max(counts)

    def gather(tensor: Tensor) -> list[Tensor]:
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=device)
        padded[: len(tensor)] = tensor.to(device)
        parts = [torch.zeros_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        return [part[:count].cpu() for part, count in zip(parts, counts, strict=True)]

    all_positions = torch.cat(gather(positions))
    all_embeddings, all_present = {}, {}
    for name in embeddings:
        local = embeddings[name] if embeddings[name].shape[1] == width else torch.zeros(len(positions), width)
        all_embeddings[name] = torch.cat(gather(local.float()))  # (N, D)
        all_present[name] = torch.cat(gather(present[name].to(torch.uint8))).bool()  # (N,)
    return all_positions, all_embeddings, all_present, int(sum(int(size[2]) for size in gathered_sizes))


def nearest_neighbours(
    embeddings: dict[str, Tensor],
    present: dict[str, Tensor],
    patients: np.ndarray,
    findings: np.ndarray | None,
    candidates: int,
    device: torch.device | str = "cpu",
) -> Tensor:
    """(N, C) dataset positions of each row's nearest rows across modalities, most similar first, -1 padded.

    The similarity of rows i and j is the mean, over ordered pairs of distinct modalities (A, B) that i has A and j
    has B, of the cosine of i's A embedding with j's B embedding: j's report is a hard negative for i's scan when it
    sits close to i's scan. A row is never its own neighbour, nor one of the same patient (a false negative), nor
    one with the same findings when ``findings`` is given (codes from ``RowFacts.finding_codes``, -1 = none known).
    """
    names = list(embeddings)
    size = len(patients)
    vectors = {name: embeddings[name].to(device, torch.float32) for name in names}  # (N, D)
    has = torch.stack([present[name].to(device, torch.float32) for name in names], dim=1)  # (N, M)
    patient_codes = torch.as_tensor(patients, device=device)
    finding_codes = None if findings is None else torch.as_tensor(findings, device=device)
    keep = min(candidates, max(size - 1, 0))
    table = torch.full((size, candidates), -1, dtype=torch.int64)
    chunk = max(1, SIMILARITY_CHUNK_ELEMENTS // max(size, 1))
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        similarity = torch.zeros(stop - start, size, device=device)  # (c, N)
        for first in names:
            for second in names:
                if first != second:
                    similarity.addmm_(vectors[first][start:stop], vectors[second].T)
        # pairs of distinct modalities that row i has in one and row j in the other: all pairs minus same-modality
        count = has[start:stop].sum(1, keepdim=True) * has.sum(1)[None, :] - has[start:stop] @ has.T  # (c, N)
        similarity.div_(count.clamp_min(1))
        excluded = count <= 0
        excluded |= patient_codes[start:stop, None] == patient_codes[None, :]  # includes the row itself
        if finding_codes is not None:
            own = finding_codes[start:stop, None]
            excluded |= (own == finding_codes[None, :]) & (own >= 0)
        similarity.masked_fill_(excluded, float("-inf"))
        if keep == 0:
            continue
        values, indices = similarity.topk(keep, dim=1)  # (c, C)
        indices.masked_fill_(torch.isinf(values), -1)
        table[start:stop, :keep] = indices.cpu()
    return table


def broadcast_from_main(table: Tensor, runtime: Any) -> Tensor:
    """Rank 0's table on every rank (NCCL needs the tensor on the GPU)."""
    if runtime is None or not runtime.distributed:
        return table
    on_device = table.to(runtime.device)
    dist.broadcast(on_device, src=0)
    return on_device.cpu()
