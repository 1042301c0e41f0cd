"""Label-aware retrieval: is what comes back *clinically* similar, not just the paired study?

Recall@K only credits a query's own paired study. A radiologist searching with a report of a pleural effusion is
also served by other effusion scans, so ranking is also scored with relevance from the findings: average precision
with "relevant = same set of findings" and nDCG@K with graded relevance (the Jaccard overlap of the finding sets).
Per-query values are returned so that confidence intervals can resample patients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _scores(query: Any, target: Any) -> torch.Tensor:
    query = F.normalize(torch.as_tensor(query, dtype=torch.float32), dim=-1)
    target = F.normalize(torch.as_tensor(target, dtype=torch.float32), dim=-1)
    if query.ndim != 2 or target.ndim != 2 or query.shape[1] != target.shape[1]:
        raise ValueError(f"expected (N, D) queries and (M, D) targets, got {tuple(query.shape)}, {tuple(target.shape)}")
    return query @ target.T  # (N, M)


def average_precision_per_query(scores: Any, relevant: Any) -> np.ndarray:
    """Average precision of each query's full ranking (ties ordered by target index).

    Args:
        scores: (N, M) similarities.
        relevant: (N, M) bool.

    Returns:
        (N,) AP in [0, 1]; NaN for a query with no relevant target.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64)
    relevant = torch.as_tensor(relevant, dtype=torch.bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores and relevant must both be (N, M), got {tuple(scores.shape)}, {tuple(relevant.shape)}")
    order = scores.argsort(dim=1, descending=True, stable=True)  # (N, M)
    hits = relevant.gather(1, order).double()  # (N, M)
    cut = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)  # (M,)
    precision = hits.cumsum(dim=1) / cut  # (N, M): precision of every top-k list
    n_relevant = hits.sum(dim=1)
    ap = (precision * hits).sum(dim=1) / n_relevant.clamp(min=1)
    return torch.where(n_relevant > 0, ap, torch.full_like(ap, float("nan"))).numpy()


def ndcg_per_query(scores: Any, gains: Any, k: int = 10) -> np.ndarray:
    """Normalised discounted cumulative gain of each query's top ``k`` (as sklearn's ``ndcg_score`` without ties).

    Args:
        scores: (N, M) similarities.
        gains: (N, M) non-negative graded relevance.
        k: the cut-off.

    Returns:
        (N,) nDCG@k in [0, 1]; NaN for a query whose targets all have zero gain (no ideal ranking to compare to).
    """
    scores = torch.as_tensor(scores, dtype=torch.float64)
    gains = torch.as_tensor(gains, dtype=torch.float64)
    if scores.shape != gains.shape or scores.ndim != 2:
        raise ValueError(f"scores and gains must both be (N, M), got {tuple(scores.shape)}, {tuple(gains.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if bool((gains < 0).any()):
        raise ValueError("gains must be non-negative")
    k = min(k, scores.shape[1])
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))  # (k,)
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]  # (N, k)
    dcg = (gains.gather(1, order) * discount).sum(dim=1)
    ideal = (gains.sort(dim=1, descending=True).values[:, :k] * discount).sum(dim=1)
    return torch.where(ideal > 0, dcg / ideal.clamp(min=1e-12), torch.full_like(dcg, float("nan"))).numpy()


def finding_relevance(query_labels: Any, target_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Relevance from finding labels: exact match of the finding sets, and their Jaccard overlap.

    Two studies without any positive finding are fully relevant to each other (both "normal").

    Args:
        query_labels: (N, K) 0/1 labels (rows with unknown labels must be removed first).
        target_labels: (M, K) 0/1 labels.

    Returns:
        ``(same_findings (N, M) bool, jaccard (N, M) float in [0, 1])``.
    """
    query_labels = np.asarray(query_labels, dtype=np.float64)
    target_labels = np.asarray(target_labels, dtype=np.float64)
    for name, labels in (("query", query_labels), ("target", target_labels)):
        if labels.ndim != 2 or not np.all(np.isin(labels, (0.0, 1.0))):
            raise ValueError(f"{name} labels must be a 2-D 0/1 array without unknowns")
    intersection = query_labels @ target_labels.T  # (N, M)
    union = query_labels.sum(1)[:, None] + target_labels.sum(1)[None, :] - intersection  # (N, M)
    jaccard = np.divide(intersection, union, out=np.ones_like(intersection), where=union > 0)
    same = union == intersection  # equal sets: nothing in one set that is not in the other
    return same, jaccard


def label_aware_retrieval(
    query: Any, target: Any, query_labels: Any, target_labels: Any, ndcg_k: int = 10, chunk_size: int = 1024
) -> dict[str, np.ndarray]:
    """Per-query AP (relevant = same findings) and nDCG@k (gain = Jaccard of findings), chunked over queries.

    Args:
        query: (N, D) embeddings.
        target: (M, D) embeddings.
        query_labels: (N, K) 0/1 labels.
        target_labels: (M, K) 0/1 labels.
        ndcg_k: nDCG cut-off.
        chunk_size: queries scored at once (memory ~ chunk_size * M).

    Returns:
        ``{"ap": (N,), "ndcg": (N,)}`` with NaN for queries without any relevant target.
    """
    query_labels, target_labels = np.asarray(query_labels), np.asarray(target_labels)
    ap, ndcg = [], []
    for start in range(0, len(query_labels), chunk_size):
        stop = start + chunk_size
        scores = _scores(query[start:stop], target)  # (chunk, M)
        same, jaccard = finding_relevance(query_labels[start:stop], target_labels)
        ap.append(average_precision_per_query(scores, same))
        ndcg.append(ndcg_per_query(scores, jaccard, ndcg_k))
    return {"ap": np.concatenate(ap), "ndcg": np.concatenate(ndcg)}
