"""Same-modality retrieval (scan -> scan, slide -> slide) of a recipe, with patient-bootstrap confidence intervals.

``retrieval.same_modality_per_query`` ranks every other study of one modality for each study; this module picks the
rows (those with the modality and every finding known), builds the relevance mask (same set of findings, as the
cross-modal mAP) and turns the per-query ranks into Recall@K, mAP and median rank with 95% CIs that resample
patients. A patient's other studies are left out of each gallery by default (``same_patient="exclude"``): that is
the patient de-duplication of this benchmark (see ``retrieval.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..embedding import EmbeddedRows
from .metrics import bootstrap_ci
from .ranking import finding_relevance
from .retrieval import same_modality_per_query


def same_modality_statistics(
    rows: EmbeddedRows,
    modality: str,
    ks: Sequence[int],
    same_patient: str = "exclude",
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Recall@K, mAP and median rank of ``modality`` -> ``modality`` retrieval on ``rows``, with patient CIs.

    Args:
        rows: embedded rows of one split; those without ``modality`` are left out.
        modality: the modality searched with itself.
        ks: Recall@K cut-offs.
        same_patient: "exclude" (a patient's other studies leave the gallery) or "positive" (they count as matches).
        n_boot, seed, confidence: of the patient bootstrap.

    Returns:
        ``{"n_rows", "rows_with_unknown_labels", "n_scored", "n_without_positive", "same_patient", "relevance",
        "R@k": {"value", "ci_low", "ci_high"}, ..., "mAP": {...}, "median_rank": {...}}``; without a scored query,
        the counts and ``"skipped"``.

    Raises:
        ValueError: no label column and ``same_patient="exclude"`` (nothing would be relevant).
    """
    present = rows.subset(rows.present[modality])
    has_labels = present.labels.shape[1] > 0
    known = ~np.isnan(present.labels).any(axis=1) if has_labels else np.ones(len(present), bool)
    chosen = present.subset(known)
    result: dict[str, Any] = {
        "n_rows": int(len(chosen)),
        "rows_with_unknown_labels": int((~known).sum()),
        "same_patient": same_patient,
        "relevance": "same set of findings" if has_labels else "the patient's other studies",
    }
    if not has_labels and same_patient == "exclude":
        raise ValueError(
            "same-modality retrieval needs label:<finding> columns to know which studies match (or same_patient: "
            "positive, which scores finding the patient's other studies)"
        )
    if len(chosen) < 2:
        result["skipped"] = f"{len(chosen)} rows with {modality} and every finding known; need at least 2"
        return result
    relevant = finding_relevance(chosen.labels, chosen.labels)[0] if has_labels else None
    per_query = same_modality_per_query(chosen.embeddings[modality], chosen.patients, relevant, same_patient)
    scored = ~np.isnan(per_query["rank"])
    result["n_scored"] = int(scored.sum())
    result["n_without_positive"] = int((~scored).sum())
    if not scored.any():
        result["skipped"] = "no query has a matching study in its gallery"
        return result
    ranks, precisions = per_query["rank"][scored], per_query["average_precision"][scored]
    values = np.stack([*(ranks <= k for k in ks), precisions, ranks], axis=1).astype(np.float64)  # (n, len(ks) + 2)

    def summary(_: np.ndarray, sample: np.ndarray) -> np.ndarray:
        return np.r_[sample[:, :-1].mean(axis=0), np.median(sample[:, -1])]

    point = summary(ranks, values)
    low, high = bootstrap_ci(
        summary, ranks, values, groups=chosen.patients[scored], n_boot=n_boot, seed=seed, alpha=1 - confidence
    )
    for i, name in enumerate([*(f"R@{k}" for k in ks), "mAP", "median_rank"]):
        result[name] = {"value": float(point[i]), "ci_low": float(low[i]), "ci_high": float(high[i])}
    return result
