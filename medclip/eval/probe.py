"""Linear probe: how much class information frozen embeddings hold, measured by a logistic regression on top.

The probe is deliberately simple (standardised inputs, multinomial logistic regression, L2 penalty) so that a
better score means a better embedding, not a cleverer classifier. The regularisation strength is chosen by
stratified cross-validation on the training split only; the test split is touched once, for the final numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .metrics import accuracy, macro_f1

# Inverse regularisation strengths tried when C is not given: four decades around sklearn's default of 1 cover
# the usual range for standardised embeddings, while keeping the search cheap (4 values x up to 5 folds).
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
MAX_FOLDS = 5


def _features(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} hold NaN or infinite values")
    return array


def _labels(values: Any, n_rows: int, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != n_rows:
        raise ValueError(f"{name} must be (N,) with N = {n_rows} rows, got shape {array.shape}")
    return array


def probe_pipeline(C: float, seed: int, max_iter: int) -> Pipeline:
    """The linear probe itself: standardised embeddings -> logistic regression with inverse regularisation ``C``;
    shared by ``linear_probe`` and the few-shot probes so both fit the same model (lbfgs fits a multinomial softmax
    model whenever there are more than two classes)."""
    return Pipeline(
        [
            ("standardise", StandardScaler()),
            ("logistic", LogisticRegression(C=C, max_iter=max_iter, random_state=seed)),
        ]
    )


def choose_C(train_x: np.ndarray, train_y: np.ndarray, seed: int, max_iter: int, grid: Sequence[float]) -> float:
    """Best C by stratified K-fold macro F1 on the training split; ties go to the smaller C (more regularised)."""
    _, class_counts = np.unique(train_y, return_counts=True)
    n_folds = min(MAX_FOLDS, int(class_counts.min()))
    if n_folds < 2:
        raise ValueError(
            "cannot choose C by cross-validation: a training class has fewer than 2 examples (reason: too_few_rows); "
            "pass C explicitly"
        )
    search = GridSearchCV(
        probe_pipeline(1.0, seed, max_iter),
        {"logistic__C": sorted(grid)},
        scoring="f1_macro",
        cv=StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed),
        refit=False,
        n_jobs=1,
    )
    search.fit(train_x, train_y)
    return float(search.best_params_["logistic__C"])


def linear_probe(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    seed: int = 0,
    max_iter: int = 2000,
    C: float | None = None,
) -> dict[str, Any]:
    """Fit a logistic-regression probe on frozen train embeddings and score it on test embeddings.

    Args:
        train_x: (N_train, D) embeddings.
        train_y: (N_train,) labels (class indices or names); at least two classes.
        test_x: (N_test, D) embeddings.
        test_y: (N_test,) labels. A test class absent from training can never be predicted and counts as a miss.
        seed: seeds the cross-validation folds and the solver, so a run is reproducible.
        max_iter: solver iterations; 2000 is enough for standardised embeddings of a few thousand dimensions.
        C: inverse regularisation strength; None chooses it from ``C_GRID`` by cross-validation on train only.

    Returns:
        ``{"accuracy": float, "macro_f1": float, "predictions": (N_test,), "probabilities": (N_test, K),
        "classes": (K,) training classes in column order, "C": the strength used}``. Macro F1 averages over every
        class seen in training or test.
    """
    train_x, test_x = _features(train_x, "train_x"), _features(test_x, "test_x")
    train_y, test_y = _labels(train_y, len(train_x), "train_y"), _labels(test_y, len(test_x), "test_y")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has width {train_x.shape[1]} but test_x has {test_x.shape[1]}")
    if len(np.unique(train_y)) < 2:
        raise ValueError("train_y holds a single class: a probe needs at least two")
    if C is None:
        C = choose_C(train_x, train_y, seed, max_iter, C_GRID)
    elif C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    probe = probe_pipeline(C, seed, max_iter).fit(train_x, train_y)
    predictions = probe.predict(test_x)
    classes = probe.classes_
    return {
        "accuracy": accuracy(test_y, predictions),
        "macro_f1": macro_f1(test_y, predictions, labels=np.union1d(classes, test_y)),
        "predictions": predictions,
        "probabilities": probe.predict_proba(test_x),  # (N_test, K)
        "classes": classes,
        "C": float(C),
    }
