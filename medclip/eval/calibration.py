"""Calibration: does a predicted probability of 0.8 come true 80% of the time?

Contrastive zero-shot scores are softmaxes at the model's training temperature, not probabilities fitted to the
clinic's prevalence, so they are often over- or under-confident. The expected calibration error (ECE) and the
reliability curve show how far off they are before anyone reads a score as a risk.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _checked(outcome: Any, probability: Any, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    outcome = np.asarray(outcome, dtype=np.float64)
    probability = np.asarray(probability, dtype=np.float64)
    if outcome.ndim != 1 or probability.shape != outcome.shape:
        raise ValueError(f"expected (N,) outcomes and (N,) probabilities, got {outcome.shape} and {probability.shape}")
    if len(outcome) == 0:
        raise ValueError("cannot measure calibration on 0 rows")
    if not np.all(np.isin(outcome, (0.0, 1.0))):
        raise ValueError("outcomes must be 0 or 1")
    if not np.all((probability >= 0.0) & (probability <= 1.0)):
        raise ValueError("probabilities must lie in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return outcome, probability


def _bin_index(probability: np.ndarray, n_bins: int) -> np.ndarray:
    # sklearn's `calibration_curve(strategy="uniform")` binning: edges at k / n_bins, a value on an edge goes left
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], probability)


def reliability_curve(outcome: Any, probability: Any, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Observed frequency against mean predicted probability in equal-width probability bins.

    Args:
        outcome: (N,) 0/1: the label (binary finding) or whether the top-1 prediction was right (multi-class).
        probability: (N,) predicted probability of that outcome.
        n_bins: equal-width bins over [0, 1]; empty bins are left out (as sklearn's ``calibration_curve``).

    Returns:
        ``{"mean_probability": (B,), "observed_frequency": (B,), "count": (B,)}`` over the B non-empty bins.
    """
    outcome, probability = _checked(outcome, probability, n_bins)
    bins = _bin_index(probability, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    sum_probability = np.bincount(bins, weights=probability, minlength=n_bins)
    sum_outcome = np.bincount(bins, weights=outcome, minlength=n_bins)
    filled = count > 0
    return {
        "mean_probability": sum_probability[filled] / count[filled],
        "observed_frequency": sum_outcome[filled] / count[filled],
        "count": count[filled],
    }


def expected_calibration_error(outcome: Any, probability: Any, n_bins: int = 10) -> float:
    """ECE: the row-weighted mean gap between predicted probability and observed frequency over the bins.

    Args:
        outcome: (N,) 0/1 outcomes (see ``reliability_curve``).
        probability: (N,) predicted probabilities of the outcome.
        n_bins: equal-width bins over [0, 1].

    Returns:
        ECE in [0, 1]; 0 is perfectly calibrated.
    """
    curve = reliability_curve(outcome, probability, n_bins)
    gaps = np.abs(curve["observed_frequency"] - curve["mean_probability"])
    return float(np.sum(curve["count"] * gaps) / np.sum(curve["count"]))
