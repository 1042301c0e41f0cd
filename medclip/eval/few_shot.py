"""Few-shot linear probes: how many labelled patients does a frozen embedding need?

Training patients (never rows: a patient's studies stay together) are subsampled to a fraction of the training split
with several seeds, a logistic-regression probe is fitted on their frozen embeddings, and it outputs probabilities
for every class, including classes the subsample never saw (probability 0), so the evaluation always covers every
finding. Subsamples that cannot fit a probe (a single class) are reported, not silently replaced.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .probe import choose_C, probe_pipeline


def sample_patients(patients: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool selecting all rows of ``ceil(fraction * P)`` patients (at least one) drawn with ``seed``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fractions must be in (0, 1], got {fraction}")
    unique = np.unique(patients)
    count = max(1, math.ceil(fraction * len(unique)))
    chosen = np.random.default_rng(seed).choice(unique, size=count, replace=False)
    return np.isin(patients, chosen)


def fit_probe_probabilities(
    train_x: np.ndarray,
    train_y: np.ndarray,
    predict_x: list[np.ndarray],
    n_classes: int,
    C: float,
    seed: int,
    max_iter: int = 1000,
) -> tuple[list[np.ndarray] | None, dict[str, Any]]:
    """Fit one logistic-regression probe and return (n, n_classes) probabilities for each array of ``predict_x``.

    Args:
        train_x: (N, D) frozen embeddings.
        train_y: (N,) class indices in ``[0, n_classes)``.
        predict_x: arrays to score, e.g. [validation embeddings, test embeddings].
        n_classes: number of classes (2 for one binary finding).
        C: inverse regularisation; 0 chooses it by cross-validation when every class has 2+ rows, else uses 1.0.
        seed: seeds the solver and the folds.
        max_iter: solver iterations.

    Returns:
        ``(probabilities or None, record)``; None (with ``record["skipped"]``) when ``train_y`` holds one class.
    """
    classes = np.unique(train_y)
    record: dict[str, Any] = {"n_train_rows": int(len(train_y)), "train_classes": int(len(classes))}
    if len(classes) < 2:
        record["skipped"] = "single_class: the training subsample holds one class"
        return None, record
    if C > 0:
        record["C"], record["C_source"] = float(C), "given"
    else:
        try:
            record["C"], record["C_source"] = choose_C(train_x, train_y, seed, max_iter, (0.01, 0.1, 1.0, 10.0)), "cv"
        except ValueError:
            record["C"], record["C_source"] = 1.0, "default (a class has fewer than 2 rows for cross-validation)"
    probe = probe_pipeline(record["C"], seed, max_iter).fit(train_x, train_y)
    outputs = []
    for x in predict_x:
        full = np.zeros((len(x), n_classes))  # (n, K): classes absent from training get probability 0
        full[:, probe.classes_.astype(int)] = probe.predict_proba(x)
        outputs.append(full)
    return outputs, record
