"""Regression probes: how much of a continuous target (ejection fraction, age, a gene score) frozen embeddings hold.

The continuous counterpart of ``probe.linear_probe``, deliberately as simple: standardised inputs and a ridge
regression (L2-penalised least squares with an unpenalised intercept, scikit-learn's ``Ridge``). The penalty is
chosen on the validation rows when there are enough of them, otherwise by K-fold cross-validation on the training
rows, folds grouped by patient; the test rows are touched once, for the final numbers. Each target of the manifest's
``target:<name>`` columns gets its own probe and penalty; rows whose target is unknown (NaN) are left out of that
target only, and counted.

Numbers: R^2 (1 - residual / total sum of squares on the test rows: 0 = no better than predicting the test mean,
negative = worse), MAE and RMSE in the target's own unit, Pearson r; each with a patient-level bootstrap CI
(``bootstrap_ci`` with ``groups``), and the MAE / RMSE of always predicting the training mean for scale.

Ridge is solved here through one eigendecomposition per fit (every penalty of the grid then costs a matrix product),
not through scikit-learn: cross-validating the grid costs one decomposition per fold. The tests check it against
scikit-learn's Ridge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import bootstrap_ci

# Penalties tried when none is given: seven decades cover standardised embeddings from tens to thousands of rows and
# dimensions (weak penalties when rows >> dimensions, strong ones when dimensions >> rows).
ALPHA_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)
MAX_FOLDS = 5
METRICS = ("r2", "mae", "rmse", "pearson_r")
MIN_FIT_ROWS = 3  # two rows always fit exactly; a probe needs more


def _features(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} hold NaN or infinite values")
    return array


def _targets(values: Any, n_rows: int, n_targets: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1 and n_targets == 1:
        array = array[:, None]  # (N,) -> (N, 1)
    if array.shape != (n_rows, n_targets):
        raise ValueError(f"{name} must be ({n_rows}, {n_targets}), got shape {array.shape}")
    if np.any(np.isinf(array)):
        raise ValueError(f"{name} hold infinite values (NaN marks an unknown target)")
    return array


@dataclass
class RidgeProbe:
    """A fitted ridge probe: ``predict(x) = standardise(x) @ coef + intercept``.

    Attributes:
        alpha: the L2 penalty.
        mean: (D,) training mean of each input dimension.
        scale: (D,) training standard deviation (1 where a dimension is constant, as scikit-learn's StandardScaler).
        coef: (D,) weights on the standardised inputs.
        intercept: the unpenalised intercept.
    """

    alpha: float
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def predict(self, x: Any) -> np.ndarray:
        """(N, D) embeddings -> (N,) predicted targets."""
        x = _features(x, "x")
        if x.shape[1] != len(self.mean):
            raise ValueError(f"x has width {x.shape[1]} but the probe was fitted on width {len(self.mean)}")
        return (x - self.mean) / self.scale @ self.coef + self.intercept


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


def ridge_path(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> list[RidgeProbe]:
    """One ridge probe per penalty, from a single eigendecomposition of the standardised, centred training inputs.

    With more rows than dimensions, X^T X = V diag(l) V^T gives the weights V diag(1 / (l + alpha)) V^T X^T y; with
    fewer, X X^T = U diag(l) U^T gives X^T U diag(1 / (l + alpha)) U^T y. The Gram matrix of the smaller side is a
    quarter of an SVD's cost, and every penalty then costs a matrix product.

    Args:
        x: (N, D) training embeddings; y: (N,) training targets (all known).
        alphas: penalties, each > 0 (they also keep the solve well conditioned).
    """
    if any(not alpha > 0 for alpha in alphas):
        raise ValueError(f"ridge penalties must be > 0, got {list(alphas)}")
    mean, scale = _standardiser(x)
    standardised = (x - mean) / scale  # (N, D)
    column_mean, target_mean = standardised.mean(axis=0), y.mean()
    centred, centred_y = standardised - column_mean, y - target_mean
    by_dimension = centred.shape[0] >= centred.shape[1]
    gram = centred.T @ centred if by_dimension else centred @ centred.T  # (D, D) or (N, N)
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    eigenvalues = np.maximum(eigenvalues, 0.0)  # rounding can leave tiny negatives on a positive semi-definite matrix
    projected = eigenvectors.T @ (centred.T @ centred_y if by_dimension else centred_y)  # (D,) or (N,)
    probes = []
    for alpha in alphas:
        weights = eigenvectors @ (projected / (eigenvalues + alpha))
        coef = weights if by_dimension else centred.T @ weights  # (D,)
        probes.append(RidgeProbe(float(alpha), mean, scale, coef, float(target_mean - column_mean @ coef)))
    return probes


def _cv_splits(n_rows: int, groups: np.ndarray | None, seed: int) -> tuple[list, str]:
    from sklearn.model_selection import GroupKFold, KFold

    if groups is None:
        n_folds = min(MAX_FOLDS, n_rows)
        splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(n_rows))), f"cv:{n_folds}-fold"
    n_folds = min(MAX_FOLDS, len(np.unique(groups)))
    if n_folds < 2:
        raise ValueError(
            "cannot choose the ridge penalty by cross-validation: the training rows hold a single patient "
            "(reason: too_few_rows); pass ridge_alpha explicitly"
        )
    return list(GroupKFold(n_splits=n_folds).split(np.zeros(n_rows), groups=groups)), f"cv:{n_folds}-fold by patient"


def _best_alpha(errors: np.ndarray, alphas: Sequence[float]) -> float:
    """The penalty of the smallest error; on a tie the larger penalty (the simpler probe)."""
    best = errors.min()
    return max(alpha for alpha, error in zip(alphas, errors, strict=True) if error == best)


def choose_alpha(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    train_groups: np.ndarray | None = None,
    alphas: Sequence[float] = ALPHA_GRID,
    seed: int = 0,
) -> tuple[float, str]:
    """The ridge penalty with the smallest mean squared error, and where it was chosen.

    On validation rows when given (probes fitted on the training rows), otherwise by K-fold cross-validation on the
    training rows (the mean over folds of each fold's MSE, as scikit-learn's GridSearchCV), folds grouped by patient
    when ``train_groups`` is given: a patient's studies on both sides of a fold would reward memorising patients.

    Returns:
        ``(alpha, source)``; source is ``"validation"``, ``"cv:5-fold by patient"`` or ``"cv:5-fold"``.
    """
    alphas = sorted(alphas)
    if val_x is not None and val_y is not None:
        errors = np.array([np.mean((p.predict(val_x) - val_y) ** 2) for p in ridge_path(train_x, train_y, alphas)])
        return _best_alpha(errors, alphas), "validation"
    splits, source = _cv_splits(len(train_y), train_groups, seed)
    errors = np.zeros(len(alphas))
    for train, held_out in splits:
        path = ridge_path(train_x[train], train_y[train], alphas)
        errors += np.array([np.mean((probe.predict(train_x[held_out]) - train_y[held_out]) ** 2) for probe in path])
    return _best_alpha(errors / len(splits), alphas), source


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(len(METRICS),) = R^2, MAE, RMSE, Pearson r; NaN where undefined (R^2 / r of a constant target or r of a
    constant prediction), so bootstrap replicates without spread are left out instead of scoring an arbitrary value."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    residual = y_true - y_pred
    centred_true, centred_pred = y_true - y_true.mean(), y_pred - y_pred.mean()
    total = np.sum(centred_true**2)
    spread = np.sqrt(total * np.sum(centred_pred**2))
    return np.array(
        [
            1.0 - np.sum(residual**2) / total if total > 0 else np.nan,
            np.mean(np.abs(residual)),
            np.sqrt(np.mean(residual**2)),
            np.sum(centred_true * centred_pred) / spread if spread > 0 else np.nan,
        ]
    )


def evaluate_regression(
    y_true: Any, y_pred: Any, patients: Sequence[str], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """R^2, MAE, RMSE and Pearson r of predictions, each with a patient-bootstrap confidence interval.

    Args:
        y_true: (N,) known targets; y_pred: (N,) predictions.
        patients: (N,) patient pseudonyms: the bootstrap resamples patients, keeping their rows together.
        n_boot: bootstrap replicates; seed: their generator's seed; alpha: 1 - confidence level.

    Returns:
        ``{"n_rows", "n_patients", metric: {"value", "ci_low", "ci_high"}}``; undefined values are None.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    patients = np.asarray(patients)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or len(patients) != len(y_true):
        raise ValueError(f"expected (N,) targets, predictions and patients, got {y_true.shape}, {y_pred.shape}")
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise ValueError("targets and predictions must be finite (leave unknown targets out first)")
    point = regression_metrics(y_true, y_pred)
    low, high = bootstrap_ci(regression_metrics, y_true, y_pred, groups=patients, n_boot=n_boot, seed=seed, alpha=alpha)

    def clean(value: float) -> float | None:
        return None if np.isnan(value) else float(value)

    result: dict[str, Any] = {"n_rows": int(len(y_true)), "n_patients": int(len(np.unique(patients)))}
    for m, name in enumerate(METRICS):
        result[name] = {"value": clean(point[m]), "ci_low": clean(low[m]), "ci_high": clean(high[m])}
    return result


def regression_probe(
    target_names: Sequence[str],
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    test_patients: Sequence[str],
    train_patients: Sequence[str] | None = None,
    val_x: Any | None = None,
    val_y: Any | None = None,
    ridge_alpha: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Fit one ridge probe per continuous target on frozen train embeddings and score it on the test embeddings.

    Args:
        target_names: T names, in column order (``Manifest.target_names``).
        train_x: (N_train, D) embeddings; train_y: (N_train, T) targets, NaN = unknown.
        test_x: (N_test, D); test_y: (N_test, T).
        test_patients: (N_test,) pseudonyms for the bootstrap.
        train_patients: (N_train,) pseudonyms; the cross-validation folds then keep patients together.
        val_x: (N_val, D) and val_y: (N_val, T): when given, each penalty is chosen on these rows (a target with
            fewer than ``MIN_FIT_ROWS`` known validation rows falls back to cross-validation, and says so).
        ridge_alpha: a fixed penalty instead of choosing one.
        n_boot: bootstrap replicates; seed: of the folds and the bootstrap; alpha: 1 - confidence level.

    Returns:
        ``{"targets": {name: {"n_train", "n_val", "unknown": {"train", "val", "test"}, "ridge_alpha",
        "alpha_source", "mean_baseline": {"mae", "rmse"}, **evaluate_regression(...)}}, "predictions": (N_test, T)
        array}``. "predictions" is an array (for plots and exports): take it out before writing JSON.
    """
    train_x, test_x = _features(train_x, "train_x"), _features(test_x, "test_x")
    n_targets = len(target_names)
    if n_targets == 0:
        raise ValueError("no continuous target to probe: the manifest has no target:<name> column")
    train_y = _targets(train_y, len(train_x), n_targets, "train_y")
    test_y = _targets(test_y, len(test_x), n_targets, "test_y")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has width {train_x.shape[1]} but test_x has {test_x.shape[1]}")
    if len(test_patients) != len(test_x):
        raise ValueError(f"test_patients has {len(test_patients)} rows but test_x has {len(test_x)}")
    if train_patients is not None and len(train_patients) != len(train_x):
        raise ValueError(f"train_patients has {len(train_patients)} rows but train_x has {len(train_x)}")
    if (val_x is None) != (val_y is None):
        raise ValueError("pass both val_x and val_y, or neither")
    if val_x is not None:
        val_x = _features(val_x, "val_x")
        val_y = _targets(val_y, len(val_x), n_targets, "val_y")
    if ridge_alpha is not None and not ridge_alpha > 0:
        raise ValueError(f"ridge_alpha must be > 0, got {ridge_alpha}")
    groups = np.asarray(train_patients).astype(str) if train_patients is not None else None
    test_patients = np.asarray(test_patients).astype(str)
    predictions = np.full((len(test_x), n_targets), np.nan)
    results: dict[str, Any] = {}
    for k, name in enumerate(target_names):
        known_train, known_test = ~np.isnan(train_y[:, k]), ~np.isnan(test_y[:, k])
        known_val = ~np.isnan(val_y[:, k]) if val_y is not None else None
        if known_train.sum() < MIN_FIT_ROWS:
            raise ValueError(
                f"target {name!r}: {int(known_train.sum())} training rows with a known value (reason: "
                f"too_few_rows); a probe needs at least {MIN_FIT_ROWS}"
            )
        x, y = train_x[known_train], train_y[known_train, k]
        if ridge_alpha is not None:
            chosen, source = float(ridge_alpha), "given"
        elif known_val is not None and known_val.sum() >= MIN_FIT_ROWS:
            chosen, source = choose_alpha(x, y, val_x[known_val], val_y[known_val, k], seed=seed)
        else:
            group_rows = groups[known_train] if groups is not None else None
            chosen, source = choose_alpha(x, y, train_groups=group_rows, seed=seed)
            if known_val is not None:
                source += f" (fewer than {MIN_FIT_ROWS} known validation rows)"
        probe = ridge_path(x, y, [chosen])[0]
        predictions[:, k] = probe.predict(test_x)
        entry: dict[str, Any] = {
            "n_train": int(known_train.sum()),
            "n_val": int(known_val.sum()) if known_val is not None else 0,
            "unknown": {
                "train": int((~known_train).sum()),
                "val": int((~known_val).sum()) if known_val is not None else 0,
                "test": int((~known_test).sum()),
            },
            "ridge_alpha": chosen,
            "alpha_source": source,
        }
        if known_test.any():
            truth = test_y[known_test, k]
            entry["mean_baseline"] = {
                "mae": float(np.mean(np.abs(truth - y.mean()))),
                "rmse": float(np.sqrt(np.mean((truth - y.mean()) ** 2))),
            }
            entry.update(
                evaluate_regression(truth, predictions[known_test, k], test_patients[known_test], n_boot, seed, alpha)
            )
        else:
            entry["n_rows"] = 0
            entry["skipped"] = "no test row with a known value"
        results[name] = entry
    return {"targets": results, "predictions": predictions}
