"""Classification metrics on predictions and scores, with patient-level bootstrap confidence intervals.

Everything takes array-likes (numpy arrays, lists, CPU tensors) and returns numpy values, so the same functions
serve zero-shot, linear-probe and retrieval recipes. The metrics are implemented in numpy (AUROC through ranks)
because ``bootstrap_ci`` calls them a thousand times; the tests check each one against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata


def _as_1d(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def _check_same_length(y_true: np.ndarray, other: np.ndarray, other_name: str) -> None:
    if len(y_true) != len(other):
        raise ValueError(f"y_true has {len(y_true)} rows but {other_name} has {len(other)}")
    if len(y_true) == 0:
        raise ValueError("cannot score an empty set (0 rows)")


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of rows whose prediction equals the label.

    Args:
        y_true: (N,) labels (any comparable values: class indices or names).
        y_pred: (N,) predicted labels.

    Returns:
        Accuracy in [0, 1].
    """
    y_true, y_pred = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_same_length(y_true, y_pred, "y_pred")
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> float:
    """Unweighted mean of per-class F1, as sklearn's ``f1_score(average="macro")``.

    Macro averaging gives a rare finding the same weight as a common one, which is what a clinic usually wants
    from a diagnostic benchmark. A class in ``labels`` that never occurs in ``y_true`` nor ``y_pred`` scores 0
    (sklearn's ``zero_division=0`` convention), so passing the full label set penalises a model that never predicts
    a class, and evaluations on different subsets stay comparable.

    Args:
        y_true: (N,) labels.
        y_pred: (N,) predicted labels.
        labels: the classes to average over; default: every class seen in ``y_true`` or ``y_pred``.

    Returns:
        Macro F1 in [0, 1].
    """
    y_true, y_pred = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_same_length(y_true, y_pred, "y_pred")
    classes = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    if classes.size == 0:
        raise ValueError("labels is empty: nothing to average over")
    # (K, N) one-hot comparisons; K is small (classes), N the rows
    is_true = y_true[None, :] == classes[:, None]
    is_pred = y_pred[None, :] == classes[:, None]
    true_positive = np.sum(is_true & is_pred, axis=1)
    denominator = np.sum(is_true, axis=1) + np.sum(is_pred, axis=1)  # 2 TP + FP + FN
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros(len(classes)), where=denominator > 0)
    return float(np.mean(f1))


def confusion(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Confusion matrix with true classes as rows and predicted classes as columns (sklearn's layout).

    Args:
        y_true: (N,) class indices in ``[0, n_classes)``.
        y_pred: (N,) predicted class indices in ``[0, n_classes)``.
        n_classes: C, fixed so that matrices from different runs or subsets line up.

    Returns:
        (C, C) int64 counts; ``matrix[i, j]`` = rows of class i predicted as j.
    """
    y_true, y_pred = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    _check_same_length(y_true, y_pred, "y_pred")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {values.dtype}")
        outside = np.flatnonzero((values < 0) | (values >= n_classes))
        if outside.size:
            raise ValueError(
                f"{name}: {outside.size} rows (first: row {outside[0]}) hold a class index outside [0, {n_classes})"
            )
    flat = y_true.astype(np.int64) * n_classes + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)  # (C, C)


def _binary_auroc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count one half, as sklearn); NaN without both positives and negatives."""
    n_positive = int(is_positive.sum())
    n_negative = len(is_positive) - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks: a tie between a positive and a negative counts 1/2
    rank_sum = ranks[is_positive].sum() - n_positive * (n_positive + 1) / 2
    return float(rank_sum / (n_positive * n_negative))


def auroc(y_true: Any, scores: Any) -> np.ndarray:
    """Per-class area under the ROC curve, one class against the rest.

    A class with no positive or no negative row has no ROC curve: its entry is NaN rather than a made-up 0.5, so
    a report shows the gap instead of hiding it (use ``np.nanmean`` for a macro average over defined classes).

    Args:
        y_true: either (N,) class indices in ``[0, C)`` (multi-class), or (N, C) 0/1 findings (multi-label, e.g.
            the manifest's ``label:<finding>`` columns) where NaN marks an unknown label and that row is left out
            for that finding only.
        scores: (N, C) scores or probabilities, higher meaning more likely.

    Returns:
        (C,) float64 AUROC per class, NaN where undefined.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    n_rows, n_classes = scores.shape
    y_true = np.asarray(y_true)
    if len(y_true) != n_rows:
        raise ValueError(f"y_true has {len(y_true)} rows but scores has {n_rows}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores hold NaN or infinite values")
    if y_true.ndim == 1:
        if not np.issubdtype(y_true.dtype, np.integer):
            raise ValueError(f"1-D y_true must hold integer class indices, got dtype {y_true.dtype}")
        outside = np.flatnonzero((y_true < 0) | (y_true >= n_classes))
        if outside.size:
            raise ValueError(f"y_true: {outside.size} rows (first: row {outside[0]}) outside [0, {n_classes})")
        return np.array([_binary_auroc(y_true == c, scores[:, c]) for c in range(n_classes)])
    if y_true.shape != scores.shape:
        raise ValueError(f"multi-label y_true must match scores' shape {scores.shape}, got {y_true.shape}")
    y_true = y_true.astype(np.float64)
    known = ~np.isnan(y_true)
    if not np.all(np.isin(y_true[known], (0.0, 1.0))):
        raise ValueError("multi-label y_true must hold 0, 1 or NaN (unknown)")
    return np.array([_binary_auroc(y_true[known[:, c], c] == 1.0, scores[known[:, c], c]) for c in range(n_classes)])


def _group_rows(groups: Any, n_rows: int) -> list[np.ndarray]:
    groups = _as_1d(groups, "groups")
    if len(groups) != n_rows:
        raise ValueError(f"groups has {len(groups)} rows but y_true has {n_rows}")
    _, group_index = np.unique(groups, return_inverse=True)
    order = np.argsort(group_index, kind="stable")
    boundaries = np.flatnonzero(np.diff(group_index[order])) + 1
    return np.split(order, boundaries)  # one array of row indices per group


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], Any],
    y_true: Any,
    y_pred_or_scores: Any,
    groups: Any | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[Any, Any]:
    """Percentile bootstrap confidence interval of ``metric_fn(y_true, y_pred_or_scores)``.

    Rows of one patient are correlated (several studies, slices or cells per patient), so resampling rows treats
    them as independent evidence and gives intervals that are too narrow. With ``groups`` (pseudonymised patient
    ids) whole patients are resampled with replacement, keeping all their rows together.

    A replicate where the metric is undefined (NaN, e.g. AUROC of a resample without positives) is left out of the
    percentiles; if every replicate is NaN the bound is NaN.

    Args:
        metric_fn: ``f(y_true, y_pred_or_scores) -> float`` or a 1-D array (e.g. ``auroc``, giving per-class CIs).
        y_true: (N, ...) labels; indexed along the first axis.
        y_pred_or_scores: (N, ...) predictions or scores; indexed along the first axis.
        groups: optional (N,) group id per row (patient); resampling is by group when given, by row otherwise.
        n_boot: number of bootstrap replicates.
        seed: seed of the resampling generator, so a report is reproducible.
        alpha: 1 - confidence level (0.05 gives a 95% interval).

    Returns:
        ``(low, high)``: floats for a scalar metric, arrays of the metric's shape otherwise.
    """
    y_true, y_pred_or_scores = np.asarray(y_true), np.asarray(y_pred_or_scores)
    _check_same_length(y_true, y_pred_or_scores, "y_pred_or_scores")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    n_rows = len(y_true)
    group_rows = _group_rows(groups, n_rows) if groups is not None else None
    replicates = []
    for _ in range(n_boot):
        if group_rows is None:
            rows = rng.integers(0, n_rows, size=n_rows)
        else:
            chosen = rng.integers(0, len(group_rows), size=len(group_rows))
            rows = np.concatenate([group_rows[g] for g in chosen])
        replicates.append(np.asarray(metric_fn(y_true[rows], y_pred_or_scores[rows]), dtype=np.float64))
    stacked = np.stack(replicates)  # (n_boot,) or (n_boot, *metric_shape)
    all_nan = np.all(np.isnan(stacked), axis=0)
    # nanquantile warns on all-NaN columns; fill them with 0 for the call and put NaN back after
    filled = np.where(all_nan, 0.0, stacked)
    low, high = np.nanquantile(filled, [alpha / 2, 1 - alpha / 2], axis=0)
    low, high = np.where(all_nan, np.nan, low), np.where(all_nan, np.nan, high)
    if stacked.ndim == 1:
        return float(low), float(high)
    return low, high
