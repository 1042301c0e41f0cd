"""``medclip.retrieval_index``: a searchable index of one modality's studies in a manifest, in one call.

The studies are read from the manifest with the model's own preprocessing, split by patient exactly as pretraining
split them (``evaluation_data``), embedded through ``medclip.embedding`` (the one batch loop the recipes use) and put
into an ``EmbeddingIndex`` (exact torch search or FAISS). The index holds pseudonyms only, so it can be saved and
shared (``index.save(folder)``, ``medclip.eval.index.load_index``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from ..embedding import LoaderOptions, embed_split
from .evaluation_data import check_split_name, open_evaluation_data
from .index import EmbeddingIndex, build_index


def retrieval_index(
    model: torch.nn.Module,
    manifest: str | os.PathLike,
    modality: str,
    split: str = "test",
    kind: str = "exact",
    root: str = "",
    options: Mapping[str, Any] | None = None,
    loader: LoaderOptions | None = None,
) -> EmbeddingIndex:
    """Embed every usable study of ``modality`` in ``manifest``'s ``split`` and index it for search.

    Args:
        model: a ``ContrastiveModel`` with its preprocessing and model card (``medclip.load_model``).
        manifest: CSV or Parquet manifest (README "Manifest format").
        modality: the modality whose studies are indexed (the targets of a search).
        split: "test" (the patients pretraining held out; default), "val", "train" or "all".
        kind: "exact", "faiss" or "faiss_ivf" (``medclip.eval.index.INDEXES``).
        root: folder for relative paths in the manifest; defaults to the manifest's folder.
        options: the index kind's options (``nlist``, ``nprobe`` for "faiss_ivf").
        loader: batch size, workers and progress of the embedding pass.

    Returns:
        The index; ``index.metadata`` says which modality, split and manifest (by hash) it holds, and how many rows
        could not be read (``skipped_rows``, counted by reason in ``skipped_reasons``).

    Raises:
        ConfigError: an unknown split, or a modality the model has no encoder for.
        ValueError: the split holds no usable study of ``modality``.
    """
    split_name = check_split_name(split)
    data = open_evaluation_data(model, manifest, [modality], root)
    dataset = data.dataset(model, [modality], split_name)
    rows, summary = embed_split(model, dataset, [modality], loader or LoaderOptions(progress=False))
    archive = rows.subset(rows.present[modality]) if len(rows) else rows
    if len(archive) == 0:
        raise ValueError(f"split {split!r} of the manifest holds no readable {modality!r} study to index")
    metadata = {
        "modality": modality,
        "split": split,
        "manifest_sha256": data.manifest.manifest_hash(),
        "skipped_rows": summary.total(),
        "skipped_reasons": summary.counts(),
    }
    vectors = archive.embeddings[modality]  # (N, D)
    return build_index(kind, vectors, list(archive.studies), list(archive.patients), metadata, options)
