"""Per-finding diagnostic evaluation with patient-level bootstrap CIs: what zero-shot and probe recipes report.

For every finding (a manifest ``label:<finding>`` column, or one class of a multi-class task) the scores of the test
rows are read at an operating threshold chosen on the validation rows, and every number comes with a 95% confidence
interval from resampling *patients* (``bootstrap_ci`` with ``groups``): rows of one patient are not independent
evidence. The macro average's interval comes from the same resamples, so it is an interval of the average itself.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .calibration import expected_calibration_error
from .classification import average_precision, choose_threshold, threshold_metrics
from .metrics import auroc, bootstrap_ci

METRICS = ("auroc", "auprc", "sensitivity", "specificity", "f1", "ece")
FALLBACK_THRESHOLD = 0.5  # used only when the validation rows cannot choose one; the report says so


def nanmean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean ignoring NaN; NaN (without a warning) where every value is NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _one_finding(y: np.ndarray, scores: np.ndarray, threshold: float, n_bins: int) -> np.ndarray:
    """(len(METRICS),) metrics of one finding on its known rows; NaN where undefined."""
    known = ~np.isnan(y)
    y, scores = y[known], scores[known]
    if len(y) == 0:
        return np.full(len(METRICS), np.nan)
    at_threshold = threshold_metrics(y, scores, threshold)
    return np.array(
        [
            auroc(y[:, None], scores[:, None])[0],
            average_precision(y, scores),
            at_threshold["sensitivity"],
            at_threshold["specificity"],
            at_threshold["f1"],
            expected_calibration_error(y, scores, n_bins),
        ]
    )


def metric_table(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """(K + 1, len(METRICS)): one row per finding, then the macro average over findings where defined.

    Args:
        y: (N, K) 0 / 1 / NaN (unknown) labels.
        scores: (N, K) probabilities in [0, 1].
        thresholds: (K,) operating thresholds.
        n_bins: calibration bins.
    """
    per_finding = np.stack(
        [_one_finding(y[:, k], scores[:, k], float(thresholds[k]), n_bins) for k in range(y.shape[1])]
    )  # (K, M)
    return np.vstack([per_finding, nanmean(per_finding, axis=0)[None, :]])  # (K + 1, M)


def choose_thresholds(
    y_val: np.ndarray | None, scores_val: np.ndarray | None, n_findings: int, rule: str = "youden"
) -> tuple[np.ndarray, list[str]]:
    """One operating threshold per finding from validation rows, and where each came from.

    A finding whose validation rows lack positives or negatives cannot pick a threshold; it falls back to
    ``FALLBACK_THRESHOLD`` and its source says why, so the report never hides it.

    Returns:
        ``(thresholds (K,), sources)``; a source is ``"validation:<rule>"`` or ``"fixed:0.5 (<reason>)"``.
    """
    thresholds = np.full(n_findings, FALLBACK_THRESHOLD)
    sources = [f"fixed:{FALLBACK_THRESHOLD} (no validation rows)"] * n_findings
    if y_val is None or scores_val is None or len(y_val) == 0:
        return thresholds, sources
    for k in range(n_findings):
        known = ~np.isnan(y_val[:, k])
        try:
            thresholds[k] = choose_threshold(y_val[known, k], scores_val[known, k], rule)
            sources[k] = f"validation:{rule}"
        except ValueError:
            sources[k] = f"fixed:{FALLBACK_THRESHOLD} (validation rows hold a single class)"
    return thresholds, sources


def _with_ci(point: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, dict[str, float | None]]:
    def clean(value: float) -> float | None:
        return None if np.isnan(value) else float(value)

    return {
        name: {"value": clean(point[m]), "ci_low": clean(low[m]), "ci_high": clean(high[m])}
        for m, name in enumerate(METRICS)
    }


def evaluate_findings(
    finding_names: Sequence[str],
    y: Any,
    scores: Any,
    patients: Sequence[str],
    thresholds: Any,
    threshold_sources: Sequence[str] | None = None,
    sites: Sequence[str | None] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 10,
    min_site_rows: int = 20,
) -> dict[str, Any]:
    """Every finding's AUROC, AUPRC, sensitivity, specificity, F1 and ECE with patient-bootstrap CIs, plus macro.

    Args:
        finding_names: K names, in column order.
        y: (N, K) 0 / 1 / NaN labels of the evaluated rows.
        scores: (N, K) probabilities in [0, 1].
        patients: (N,) patient pseudonyms: the bootstrap resamples these.
        thresholds: (K,) thresholds chosen beforehand (``choose_thresholds`` on validation rows).
        threshold_sources: (K,) where each threshold came from, recorded in the result.
        sites: (N,) site of each row (None where blank); with two or more sites, each site with at least
            ``min_site_rows`` rows gets its own breakdown (same thresholds, its own CIs).
        n_boot: bootstrap replicates.
        seed: bootstrap seed.
        alpha: 1 - confidence level.
        n_bins: calibration bins.
        min_site_rows: smallest site evaluated on its own; smaller sites are listed with their row count only.

    Returns:
        ``{"findings": {name: {...counts, "threshold", metric: {"value", "ci_low", "ci_high"}}}, "macro": {...},
        "by_site": {...}}``; undefined values are None.
    """
    y = np.asarray(y, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    patients = np.asarray(patients)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    n_findings = len(finding_names)
    if y.ndim != 2 or y.shape[1] != n_findings or scores.shape != y.shape:
        raise ValueError(f"expected (N, {n_findings}) labels and scores, got {y.shape} and {scores.shape}")
    if len(patients) != len(y) or thresholds.shape != (n_findings,):
        raise ValueError(f"expected {len(y)} patients and {n_findings} thresholds")

    def table(y_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        return metric_table(y_rows, score_rows, thresholds, n_bins)

    point = table(y, scores)
    low, high = bootstrap_ci(table, y, scores, groups=patients, n_boot=n_boot, seed=seed, alpha=alpha)
    sources = list(threshold_sources) if threshold_sources is not None else ["given"] * n_findings
    findings = {}
    for k, name in enumerate(finding_names):
        known = ~np.isnan(y[:, k])
        findings[name] = {
            "n_rows": int(known.sum()),
            "n_patients": int(len(np.unique(patients[known]))),
            "n_positive": int(np.sum(y[known, k] == 1.0)),
            "n_negative": int(np.sum(y[known, k] == 0.0)),
            "threshold": float(thresholds[k]),
            "threshold_source": sources[k],
            **_with_ci(point[k], low[k], high[k]),
        }
    result: dict[str, Any] = {
        "findings": findings,
        "macro": _with_ci(point[-1], low[-1], high[-1]),
        "n_rows": int(len(y)),
        "n_patients": int(len(np.unique(patients))),
    }
    if sites is not None:
        result["by_site"] = _by_site(
            finding_names, y, scores, patients, thresholds, sources, sites, n_boot, seed, alpha, n_bins, min_site_rows
        )
    return result


def _by_site(finding_names, y, scores, patients, thresholds, sources, sites, n_boot, seed, alpha, n_bins, min_rows):
    """The same evaluation within each site (a model that only works at the training hospital shows up here)."""
    site_of_row = np.array(["(blank)" if site is None else str(site) for site in sites])
    names = sorted(set(site_of_row))
    if len(names) < 2:
        return {}
    breakdown: dict[str, Any] = {}
    for name in names:
        rows = site_of_row == name
        if rows.sum() < min_rows:
            breakdown[name] = {"n_rows": int(rows.sum()), "skipped": f"fewer than {min_rows} rows"}
            continue
        breakdown[name] = evaluate_findings(
            finding_names,
            y[rows],
            scores[rows],
            patients[rows],
            thresholds,
            sources,
            None,
            n_boot,
            seed,
            alpha,
            n_bins,
        )
    return breakdown


def single_class_rows(y: np.ndarray) -> np.ndarray:
    """(N,) bool: rows whose labels are all known with exactly one positive (usable for multi-class metrics)."""
    y = np.asarray(y, dtype=np.float64)
    return ~np.isnan(y).any(axis=1) & (np.nansum(y, axis=1) == 1)


def evaluate_multiclass(
    y: Any,
    probabilities: Any,
    patients: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Accuracy, macro-F1 and top-1 calibration (ECE) of a one-class-per-row task, with patient-bootstrap CIs.

    Rows without exactly one known positive cannot be scored as multi-class; they are counted, not guessed.

    Args:
        y: (N, K) 0 / 1 / NaN labels, one column per class.
        probabilities: (N, K) class probabilities (rows sum to 1).
        patients: (N,) patient pseudonyms.
        n_boot: bootstrap replicates.
        seed: bootstrap seed.
        alpha: 1 - confidence level.
        n_bins: calibration bins.
    """
    from .metrics import accuracy, macro_f1

    y = np.asarray(y, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    usable = single_class_rows(y)
    result: dict[str, Any] = {"n_rows": int(usable.sum()), "rows_without_single_class": int((~usable).sum())}
    if not usable.any():
        return result
    truth = np.argmax(np.nan_to_num(y[usable]), axis=1)
    probabilities = probabilities[usable]
    classes = np.arange(y.shape[1])

    def table(truth_rows: np.ndarray, probability_rows: np.ndarray) -> np.ndarray:
        predicted = probability_rows.argmax(axis=1)
        correct = (predicted == truth_rows).astype(np.float64)
        return np.array(
            [
                accuracy(truth_rows, predicted),
                macro_f1(truth_rows, predicted, labels=classes),
                expected_calibration_error(correct, probability_rows.max(axis=1), n_bins),
            ]
        )

    point = table(truth, probabilities)
    low, high = bootstrap_ci(
        table, truth, probabilities, groups=np.asarray(patients)[usable], n_boot=n_boot, seed=seed, alpha=alpha
    )
    for m, name in enumerate(("accuracy", "macro_f1", "top1_ece")):
        result[name] = {"value": float(point[m]), "ci_low": float(low[m]), "ci_high": float(high[m])}
    result["majority_class_accuracy"] = float(np.bincount(truth, minlength=len(classes)).max() / len(truth))
    return result


@dataclass
class FindingStatistics:
    """How scored findings are evaluated: bootstrap, thresholds, calibration, sites (the recipes' shared options)."""

    n_bootstrap: int = 1000  # bootstrap replicates for the CIs
    confidence: float = 0.95
    seed: int = 0  # bootstrap seed
    threshold_rule: str = "youden"  # youden (sensitivity + specificity) | f1
    calibration_bins: int = 10
    min_site_rows: int = 20  # smallest site reported on its own

    @classmethod
    def of(cls, config: Any) -> FindingStatistics:
        """The statistics options of a recipe config with the same fields."""
        return cls(*(getattr(config, field.name) for field in dataclasses.fields(cls)))

    def check(self) -> None:
        from ..config import ConfigError

        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence}")


def evaluate_scores(
    findings: Sequence[str],
    y_test: np.ndarray,
    scores_test: np.ndarray,
    patients: Sequence[str],
    sites: Sequence[str | None],
    statistics: FindingStatistics,
    y_val: np.ndarray | None = None,
    scores_val: np.ndarray | None = None,
    multiclass: bool = False,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Evaluate (N, K) finding scores on test rows, with thresholds chosen on validation rows.

    Returns:
        ``(evaluate_findings result, evaluate_multiclass result or None)``; per-site results when any row has a site.
    """
    thresholds, sources = choose_thresholds(y_val, scores_val, len(findings), statistics.threshold_rule)
    options = {
        "n_boot": statistics.n_bootstrap,
        "seed": statistics.seed,
        "alpha": 1.0 - statistics.confidence,
        "n_bins": statistics.calibration_bins,
    }
    has_sites = any(site is not None for site in sites)
    result = evaluate_findings(
        findings,
        y_test,
        scores_test,
        patients,
        thresholds,
        sources,
        sites=list(sites) if has_sites else None,
        min_site_rows=statistics.min_site_rows,
        **options,
    )
    per_class = evaluate_multiclass(y_test, scores_test, patients, **options) if multiclass else None
    return result, per_class
