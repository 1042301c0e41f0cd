"""Modality-gap removal for retrieval: centre each modality on its own centroid, then re-normalise.

Contrastive training leaves every modality in its own cone of the sphere (the modality gap, Liang et al., NeurIPS
2022). Within one query's ranking a pure shift changes little, but the normalisation after the shift does not:
targets whose embedding leans towards the query modality's centroid score higher for *every* query (hubs), and in a
gallery that mixes modalities each query prefers its own modality whatever the content. Subtracting each modality's
mean embedding and re-normalising is the simplest post-hoc remedy; it is the centring step behind post-hoc gap
removal such as GR-CLIP (Li et al. 2025, "Closing the Modality Gap for Mixed Modality Search") and I0T's
standardisation (An et al., ACL 2025). It needs no labels and no training.

Centroids belong to the model, not to the evaluated set: estimate them once on a reference set (the training or
validation embeddings) and reuse them for every query, as a deployed search would. Estimating them on the test set
itself is convenient and label-free, but the report should say so.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_CENTRED_NORM = 1e-6  # a unit row this close to its centroid has no direction left once centred


def _embeddings(values: Any, name: str) -> Tensor:
    tensor = torch.as_tensor(values)
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return tensor


def modality_centroid(embeddings: Any, mask: Any = None) -> Tensor:
    """The mean of one modality's L2-normalised embeddings (present rows only).

    Args:
        embeddings: (N, D) embeddings of one modality (a reference set: training or validation rows).
        mask: (N,) bool presence; rows without the modality are left out.

    Returns:
        (D,) centroid, in the dtype and on the device of ``embeddings``; its norm is in [0, 1] (1 = collapsed).
    """
    tensor = _embeddings(embeddings, "embeddings")
    if mask is not None:
        mask = torch.as_tensor(mask, device=tensor.device)
        if mask.shape != tensor.shape[:1] or mask.dtype != torch.bool:
            raise ValueError(f"mask must be ({tensor.shape[0]},) bool, got {tuple(mask.shape)} {mask.dtype}")
        tensor = tensor[mask]
        if tensor.shape[0] == 0:
            raise ValueError("no present row to estimate the centroid from")
    return F.normalize(tensor, dim=-1).mean(dim=0)


def remove_modality_gap(embeddings: Any, centroid: Any) -> Tensor:
    """Centre unit embeddings on their modality's centroid and re-normalise: ``normalize(normalize(x) - centroid)``.

    Args:
        embeddings: (N, D) embeddings of one modality.
        centroid: (D,) that modality's centroid (``modality_centroid`` on a reference set).

    Returns:
        (N, D) unit vectors, ready for ``similarity`` / ``recall_at_k`` / an index.

    Raises:
        ValueError: when a row coincides with the centroid (a collapsed modality has nothing left to rank by).
    """
    tensor = _embeddings(embeddings, "embeddings")
    centroid = torch.as_tensor(centroid, device=tensor.device, dtype=tensor.dtype)
    if centroid.shape != tensor.shape[1:]:
        raise ValueError(f"centroid must be ({tensor.shape[1]},), got {tuple(centroid.shape)}")
    centred = F.normalize(tensor, dim=-1) - centroid  # (N, D)
    lengths = centred.norm(dim=-1)
    if bool((lengths < MIN_CENTRED_NORM).any()):
        raise ValueError(
            f"{int((lengths < MIN_CENTRED_NORM).sum())} rows coincide with their modality centroid: the modality "
            "has collapsed and cannot be centred"
        )
    return centred / lengths[:, None]


def gap_removed(
    query: Any, target: Any, query_centroid: Any = None, target_centroid: Any = None
) -> tuple[Tensor, Tensor]:
    """Both sides of a cross-modal search with their modality gap removed.

    Args:
        query: (N, D) query embeddings (e.g. reports); target: (M, D) target embeddings (e.g. scans).
        query_centroid: (D,) centroid of the query modality from a reference set; None = the mean of ``query``.
        target_centroid: (D,) likewise for the target modality; None = the mean of ``target``.

    Returns:
        ``(query, target)``, each centred on its centroid and re-normalised.
    """
    query_centroid = modality_centroid(query) if query_centroid is None else query_centroid
    target_centroid = modality_centroid(target) if target_centroid is None else target_centroid
    return remove_modality_gap(query, query_centroid), remove_modality_gap(target, target_centroid)
