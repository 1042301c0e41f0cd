"""Binary diagnostic metrics: AUPRC, an operating threshold chosen on validation data, and the metrics at it.

A clinic reads a test at one operating point, so sensitivity, specificity and F1 are reported at a threshold that is
chosen on the *validation* split and then applied unchanged to the test split; choosing it on the test split would
overstate every number. Implemented in numpy because ``bootstrap_ci`` calls them a thousand times; the tests check
each one against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import Registry


def _binary(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N,) 0/1 labels and (N,) finite scores as arrays, checked for shape and values."""
    y_true = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.ndim != 1 or scores.shape != y_true.shape:
        raise ValueError(f"expected (N,) labels and (N,) scores, got shapes {y_true.shape} and {scores.shape}")
    if not np.all(np.isin(y_true, (0.0, 1.0))):
        raise ValueError("binary labels must be 0 or 1 (drop unknown rows before scoring)")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores hold NaN or infinite values")
    return y_true == 1.0, scores


def average_precision(y_true: Any, scores: Any) -> float:
    """Area under the precision-recall curve as sklearn's ``average_precision_score`` (step interpolation).

    AUPRC is the metric to read next to AUROC for rare findings: with 1% prevalence a model can have a high AUROC
    and still bury most true positives among false alarms, which AUPRC shows.

    Args:
        y_true: (N,) 0/1 labels.
        scores: (N,) scores, higher meaning more likely positive.

    Returns:
        AUPRC in [0, 1], NaN when there is no positive row.
    """
    is_positive, scores = _binary(y_true, scores)
    n_positive = int(is_positive.sum())
    if n_positive == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, hits = scores[order], is_positive[order]
    # one operating point per distinct score: tied rows enter the positive set together
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(hits) - 1]
    true_positives = np.cumsum(hits)[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall = true_positives / n_positive
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def confusion_at(y_true: Any, scores: Any, threshold: float) -> tuple[int, int, int, int]:
    """(TP, FP, TN, FN) when rows with ``score >= threshold`` are called positive."""
    is_positive, scores = _binary(y_true, scores)
    called = scores >= threshold
    true_positive = int(np.sum(called & is_positive))
    false_positive = int(np.sum(called & ~is_positive))
    false_negative = int(np.sum(~called & is_positive))
    return true_positive, false_positive, len(scores) - true_positive - false_positive - false_negative, false_negative


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else float("nan")


def threshold_metrics(y_true: Any, scores: Any, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, precision (PPV) and F1 at one threshold (``score >= threshold`` is positive).

    A quantity whose denominator is empty (sensitivity without positive rows) is NaN, never a made-up 0 or 1.

    Returns:
        ``{"sensitivity", "specificity", "precision", "f1"}``.
    """
    true_positive, false_positive, true_negative, false_negative = confusion_at(y_true, scores, threshold)
    return {
        "sensitivity": _ratio(true_positive, true_positive + false_negative),
        "specificity": _ratio(true_negative, true_negative + false_positive),
        "precision": _ratio(true_positive, true_positive + false_positive),
        "f1": _ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative),
    }


def _candidate_counts(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Every distinct score as a threshold (descending), with TP and FP counts when calling ``>= threshold``."""
    is_positive, scores = _binary(y_true, scores)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, hits = scores[order], is_positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(hits) - 1]
    true_positives = np.cumsum(hits)[last_of_tie]
    false_positives = last_of_tie + 1 - true_positives
    return sorted_scores[last_of_tie], true_positives, false_positives, int(is_positive.sum()), len(hits)


def _youden(true_positives, false_positives, n_positive, n_negative) -> np.ndarray:
    return true_positives / n_positive - false_positives / n_negative  # sensitivity + specificity - 1


def _f1(true_positives, false_positives, n_positive, n_negative) -> np.ndarray:
    return 2 * true_positives / (true_positives + false_positives + n_positive)  # 2TP / (2TP + FP + FN)


# How an operating point is chosen on validation data: name -> objective over the candidate thresholds.
THRESHOLD_RULES: Registry[Callable[..., np.ndarray]] = Registry("threshold rule")
THRESHOLD_RULES.register("youden", _youden)  # balances sensitivity and specificity (screening default)
THRESHOLD_RULES.register("f1", _f1)  # balances precision and recall (rare findings)


def choose_threshold(y_true: Any, scores: Any, rule: str = "youden") -> float:
    """The score threshold maximising ``rule`` on (validation) data; ties go to the highest threshold.

    Args:
        y_true: (N,) 0/1 validation labels, with both classes present.
        scores: (N,) validation scores.
        rule: a name in ``THRESHOLD_RULES`` ("youden" or "f1").

    Returns:
        The threshold; rows with ``score >= threshold`` are called positive.

    Raises:
        ValueError: when the validation rows lack positives or negatives (no operating point can be chosen).
    """
    objective = THRESHOLD_RULES.get(rule)
    thresholds, true_positives, false_positives, n_positive, n_rows = _candidate_counts(y_true, scores)
    n_negative = n_rows - n_positive
    if n_positive == 0 or n_negative == 0:
        raise ValueError(
            f"cannot choose a threshold: the validation rows hold {n_positive} positives and {n_negative} negatives "
            "(reason: single_class_validation)"
        )
    values = objective(true_positives, false_positives, n_positive, n_negative)
    return float(thresholds[int(np.argmax(values))])  # argmax takes the first, i.e. highest, best threshold
