"""Cross-modal retrieval metrics by exact cosine search (report -> scan, cell -> cell type prompt, ...).

Search is exact (a matrix product) and chunked over queries, so memory stays O(chunk_size * M) whatever the
number of queries N; no approximate index is involved, so the numbers are reproducible.

Ties are counted against the query: a negative scoring exactly as high as the best positive ranks ahead of it.
Otherwise a collapsed model mapping every input to the same vector would get a perfect Recall@1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _embeddings(values: Any, name: str) -> Tensor:
    tensor = torch.as_tensor(values)
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be (rows, D), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return tensor


def similarity(query: Any, target: Any) -> Tensor:
    """Cosine similarity of every query with every target.

    Args:
        query: (N, D) embeddings.
        target: (M, D) embeddings.

    Returns:
        (N, M) cosine similarities in [-1, 1].
    """
    query, target = _embeddings(query, "query embeddings"), _embeddings(target, "target embeddings")
    if query.shape[1] != target.shape[1]:
        raise ValueError(f"query width {query.shape[1]} differs from target width {target.shape[1]}")
    return F.normalize(query, dim=-1) @ F.normalize(target.to(query.device, query.dtype), dim=-1).T  # (N, M)


def _positive_mask(positives: Any, n_query: int, n_target: int) -> Tensor:
    mask = torch.as_tensor(positives)
    if mask.shape != (n_query, n_target):
        raise ValueError(f"positives must be (N, M) = ({n_query}, {n_target}), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"positives must be a boolean mask, got dtype {mask.dtype}")
    without = torch.nonzero(~mask.any(dim=1)).flatten()
    if without.numel():
        raise ValueError(
            f"{without.numel()} queries (first: row {int(without[0])}) have no positive target, so no rank; "
            "remove them or add their matches"
        )
    return mask


def _scored_chunks(query: Any, target: Any, positives: Any | None, chunk_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(scores (chunk, M), is_positive (chunk, M) bool)`` for consecutive chunks of queries."""
    query, target = _embeddings(query, "query embeddings"), _embeddings(target, "target embeddings")
    n_query, n_target = query.shape[0], target.shape[0]
    if n_query == 0 or n_target == 0:
        raise ValueError(f"retrieval needs at least one query and one target, got {n_query} and {n_target}")
    if query.shape[1] != target.shape[1]:
        raise ValueError(f"query width {query.shape[1]} differs from target width {target.shape[1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if positives is None and n_query != n_target:
        raise ValueError(f"paired retrieval needs as many targets as queries, got {n_query} and {n_target}")
    mask = _positive_mask(positives, n_query, n_target) if positives is not None else None
    target = F.normalize(target.to(query.device, query.dtype), dim=-1)
    for start in range(0, n_query, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n_query), device=query.device)
        scores = F.normalize(query[rows], dim=-1) @ target.T  # (chunk, M)
        if mask is None:
            is_positive = torch.zeros_like(scores, dtype=torch.bool)
            is_positive[torch.arange(len(rows)), rows] = True  # the paired target of each query
        else:
            is_positive = mask[start : start + len(rows)].to(scores.device)  # (chunk, M)
        yield scores, is_positive


def retrieval_ranks(query: Any, target: Any, positives: Any | None = None, chunk_size: int = 1024) -> Tensor:
    """1-based rank of the best-ranked positive target for each query.

    Args:
        query: (N, D) embeddings.
        target: (M, D) embeddings.
        positives: None when query i's only match is target i (paired data, needs N == M); otherwise an (N, M)
            bool mask of matching targets (same patient, same cell type, same label set); every query needs one.
        chunk_size: queries scored at once; bounds memory to chunk_size * M similarities.

    Returns:
        (N,) int64 ranks in [1, M].
    """
    ranks = []
    for scores, is_positive in _scored_chunks(query, target, positives, chunk_size):
        best_positive = scores.masked_fill(~is_positive, float("-inf")).amax(dim=1, keepdim=True)  # (chunk, 1)
        ranks.append(1 + ((scores >= best_positive) & ~is_positive).sum(dim=1))  # ties count against the query
    return torch.cat(ranks).cpu()


def recall_at_k(
    query: Any,
    target: Any,
    ks: Sequence[int] = (1, 5, 10),
    positives: Any | None = None,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@K: the fraction of queries with a positive target among their K most similar targets.

    Args:
        query: (N, D) embeddings.
        target: (M, D) embeddings.
        ks: the cut-offs K; a K above M gives 1.0.
        positives: see ``retrieval_ranks``.
        chunk_size: see ``retrieval_ranks``.

    Returns:
        ``{"R@1": r1, "R@5": r5, ...}`` with values in [0, 1].
    """
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    ranks = retrieval_ranks(query, target, positives=positives, chunk_size=chunk_size)
    return {f"R@{k}": float((ranks <= k).double().mean()) for k in ks}


def median_rank(query: Any, target: Any, positives: Any | None = None, chunk_size: int = 1024) -> float:
    """Median over queries of the rank of the best positive target (1 is perfect; lower is better).

    Args:
        query: (N, D) embeddings.
        target: (M, D) embeddings.
        positives: see ``retrieval_ranks``.
        chunk_size: see ``retrieval_ranks``.

    Returns:
        The median rank (a half-integer when N is even).
    """
    ranks = retrieval_ranks(query, target, positives=positives, chunk_size=chunk_size)
    return float(np.median(ranks.numpy()))


def mean_average_precision(query: Any, target: Any, positives: Any | None = None, chunk_size: int = 1024) -> float:
    """Mean over queries of average precision over the full ranked target list.

    Unlike Recall@K, AP rewards ranking *all* positives high, which matters when a query has many matches (all
    cells of a type, all studies sharing a finding). Tied scores are ordered by target index.

    Args:
        query: (N, D) embeddings.
        target: (M, D) embeddings.
        positives: see ``retrieval_ranks``.
        chunk_size: see ``retrieval_ranks``.

    Returns:
        mAP in [0, 1].
    """
    average_precisions = []
    for scores, is_positive in _scored_chunks(query, target, positives, chunk_size):
        order = scores.argsort(dim=1, descending=True, stable=True)  # (chunk, M)
        hits = is_positive.gather(1, order).double()  # (chunk, M): 1 where the ranked target is positive
        cut_size = torch.arange(1, hits.shape[1] + 1, device=hits.device)  # (M,)
        precision = hits.cumsum(dim=1) / cut_size  # (chunk, M): precision of the top-k list for every k
        average_precisions.append((precision * hits).sum(dim=1) / hits.sum(dim=1))  # (chunk,)
    return float(torch.cat(average_precisions).mean())


# --- same-modality retrieval (scan -> scan, slide -> slide) ---------------------------------------------------------
# Same-modality search finds similar *cases*: the query is one study, the gallery every other study of the same
# modality. A patient's other studies (a follow-up scan, another slide of the same block) are near-duplicates of the
# query, so by default they are left out of its gallery: kept as negatives they would punish a correct embedding,
# counted as positives they would turn the benchmark into the easy task of recognising the patient. With
# same_patient="positive" they count as matches instead, which measures finding a patient's prior studies.
SAME_PATIENT_POLICIES = ("exclude", "positive")


def _same_modality_inputs(
    embeddings: Any, patients: Any, relevant: Any | None, same_patient: str, chunk_size: int
) -> tuple[Tensor, Tensor, Tensor | None]:
    features = _embeddings(embeddings, "embeddings")
    n_rows = features.shape[0]
    if n_rows < 2:
        raise ValueError(f"same-modality retrieval needs at least two rows, got {n_rows}")
    if same_patient not in SAME_PATIENT_POLICIES:
        raise ValueError(f"same_patient must be one of {', '.join(SAME_PATIENT_POLICIES)}, got {same_patient!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    patients = np.asarray(patients)
    if patients.shape != (n_rows,):
        raise ValueError(f"patients must be ({n_rows},), got shape {patients.shape}")
    _, patient_codes = np.unique(patients.astype(str), return_inverse=True)
    mask = None
    if relevant is not None:
        mask = torch.as_tensor(relevant)
        if mask.shape != (n_rows, n_rows) or mask.dtype != torch.bool:
            raise ValueError(
                f"relevant must be an ({n_rows}, {n_rows}) bool mask, got {tuple(mask.shape)} {mask.dtype}"
            )
    elif same_patient == "exclude":
        raise ValueError("nothing is relevant: pass relevant (e.g. from finding_relevance), or same_patient='positive'")
    return F.normalize(features, dim=-1), torch.as_tensor(patient_codes, device=features.device), mask


def same_modality_per_query(
    embeddings: Any,
    patients: Any,
    relevant: Any | None = None,
    same_patient: str = "exclude",
    chunk_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Each study of one modality as a query against every other study of that modality.

    The query itself is never in its gallery. A study of the query's patient is left out of the gallery
    (``same_patient="exclude"``, the default, see above) or counts as a match (``"positive"``). Ranks and average
    precision follow ``retrieval_ranks`` and ``mean_average_precision``: ties count against the query for the rank,
    and AP orders tied scores by gallery index.

    Args:
        embeddings: (N, D) embeddings of one modality (e.g. every test CT).
        patients: (N,) patient pseudonym of each row.
        relevant: (N, N) bool, which studies match which (e.g. the exact-match mask of ``finding_relevance``);
            the diagonal is ignored. Optional with ``same_patient="positive"`` (then only the patient's other studies
            match: patient re-identification).
        same_patient: "exclude" or "positive".
        chunk_size: queries scored at once; bounds memory to chunk_size * N similarities.

    Returns:
        ``{"rank": (N,) float, "average_precision": (N,) float, "n_gallery": (N,) int, "n_positive": (N,) int}``;
        rank and AP are NaN for a query without any match in its gallery (it cannot be scored; count, do not guess).
    """
    features, codes, relevant_mask = _same_modality_inputs(embeddings, patients, relevant, same_patient, chunk_size)
    n_rows = features.shape[0]
    columns = torch.arange(n_rows, device=features.device)
    ranks, precisions, gallery_sizes, positive_counts = [], [], [], []
    for start in range(0, n_rows, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n_rows), device=features.device)
        scores = features[rows] @ features.T  # (C, N)
        same = codes[rows][:, None] == codes[None, :]  # (C, N): the query's patient, itself included
        in_gallery = rows[:, None] != columns[None, :]
        if same_patient == "exclude":
            in_gallery &= ~same
        if relevant_mask is not None:
            is_positive = relevant_mask[start : start + len(rows)].to(features.device).clone()  # (C, N)
        else:
            is_positive = torch.zeros_like(in_gallery)
        if same_patient == "positive":
            is_positive |= same
        is_positive &= in_gallery
        n_positive = is_positive.sum(dim=1)
        best_positive = scores.masked_fill(~is_positive, float("-inf")).amax(dim=1, keepdim=True)  # (C, 1)
        ahead = ((scores >= best_positive) & in_gallery & ~is_positive).sum(dim=1)  # ties count against the query
        ranks.append(torch.where(n_positive > 0, 1.0 + ahead.double(), float("nan")))
        order = scores.masked_fill(~in_gallery, float("-inf")).argsort(dim=1, descending=True, stable=True)  # (C, N)
        hits = is_positive.gather(1, order).double()  # (C, N)
        listed = in_gallery.gather(1, order).double().cumsum(dim=1).clamp(min=1)  # gallery entries up to each cut
        precision = hits.cumsum(dim=1) / listed  # (C, N)
        average_precision = (precision * hits).sum(dim=1) / n_positive.clamp(min=1)
        precisions.append(torch.where(n_positive > 0, average_precision, float("nan")))
        gallery_sizes.append(in_gallery.sum(dim=1))
        positive_counts.append(n_positive)
    return {
        "rank": torch.cat(ranks).cpu().numpy(),
        "average_precision": torch.cat(precisions).cpu().numpy(),
        "n_gallery": torch.cat(gallery_sizes).cpu().numpy(),
        "n_positive": torch.cat(positive_counts).cpu().numpy(),
    }


def same_modality_retrieval(
    embeddings: Any,
    patients: Any,
    relevant: Any | None = None,
    same_patient: str = "exclude",
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, Any]:
    """Recall@K, mAP and median rank of same-modality retrieval over the queries that have a match.

    Args:
        embeddings, patients, relevant, same_patient, chunk_size: see ``same_modality_per_query``.
        ks: the cut-offs K.

    Returns:
        ``{"R@1": ..., "mAP", "median_rank", "n_queries", "n_scored", "n_without_positive", "same_patient"}``;
        a JSON-able dict. Per-query values (for patient-bootstrap CIs) come from ``same_modality_per_query``.

    Raises:
        ValueError: when no query has a match in its gallery.
    """
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    per_query = same_modality_per_query(embeddings, patients, relevant, same_patient, chunk_size)
    scored = ~np.isnan(per_query["rank"])
    if not scored.any():
        raise ValueError("no query has a matching study in its gallery: nothing to score")
    ranks = per_query["rank"][scored]
    result: dict[str, Any] = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    result.update(
        {
            "mAP": float(np.mean(per_query["average_precision"][scored])),
            "median_rank": float(np.median(ranks)),
            "n_queries": int(len(scored)),
            "n_scored": int(scored.sum()),
            "n_without_positive": int((~scored).sum()),
            "same_patient": same_patient,
        }
    )
    return result
