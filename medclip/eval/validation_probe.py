"""Label probes during validation: do a tower's embeddings carry the findings, on patients it never saw?

Cross-modal retrieval on a few dozen validation patients is a coarse and noisy signal: R@1 among 24 patients moves in
steps of 0.042, and a tower can learn the findings long before it can tell individual patients apart. When the
manifest has ``label:<finding>`` columns, every validation therefore also fits, per modality and finding, a
logistic regression on the (frozen) embeddings of training patients and scores the validation patients with it:

- ``val/probe/<modality>/<finding>/auroc``: the held-out AUROC of that probe (0.5 = the embedding holds nothing
  about the finding that transfers to new patients);
- ``val/probe/<modality>/macro_auroc``: their mean, a candidate ``train.best_metric``.

The probe is fixed and simple (standardised features, L2 logistic regression with ``C = PROBE_C``) so that a higher
number means a better embedding rather than a luckier regularisation search; it is the same pipeline as the
``linear-probe`` recipe (``eval.probe.probe_pipeline``). A finding is probed only where the training rows hold at
least ``MIN_CLASS_ROWS`` positives and negatives and the validation rows at least one of each, so no number is made
up from a single example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .metrics import auroc
from .probe import probe_pipeline

PROBE_C = 0.1  # strong L2: a few hundred training rows against 64-768 embedding dimensions
MIN_CLASS_ROWS = 2  # training positives and negatives a finding needs before it is probed
MAX_ITER = 2000
PREFIX = "val/probe"
MACRO = "macro_auroc"


def macro_aurocs(metrics: Mapping[str, float], prefix: str = PREFIX) -> dict[str, float]:
    """modality -> its probes' held-out macro AUROC, read back from a validation's metrics (empty without probes)."""
    head, tail = f"{prefix}/", f"/{MACRO}"
    return {
        key[len(head) : -len(tail)]: value
        for key, value in metrics.items()
        if key.startswith(head) and key.endswith(tail)
    }


def label_probe_metrics(
    train_features: Mapping[str, np.ndarray],
    train_masks: Mapping[str, np.ndarray],
    train_labels: np.ndarray,
    val_features: Mapping[str, np.ndarray],
    val_masks: Mapping[str, np.ndarray],
    val_labels: np.ndarray,
    label_names: Sequence[str],
    prefix: str = PREFIX,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out AUROC of a logistic-regression probe per modality and finding (see the module docstring).

    Args:
        train_features / val_features: modality -> (N, D) embeddings of the training / validation rows.
        train_masks / val_masks: modality -> (N,) bool, whether the row has that modality.
        train_labels / val_labels: (N, K) float, 1 / 0 / NaN for unknown, in the order of ``label_names``.
        label_names: the manifest's findings.
        prefix: metric name prefix.
        seed: the logistic regression's random state.

    Returns:
        ``{prefix}/<modality>/<finding>/auroc`` for every finding that could be probed, and
        ``{prefix}/<modality>/macro_auroc`` for every modality with at least one.
    """
    metrics: dict[str, float] = {}
    if not label_names or train_labels.size == 0 or val_labels.size == 0:
        return metrics
    for modality in sorted(set(train_features) & set(val_features)):
        scores = []
        for index, finding in enumerate(label_names):
            value = _probe_one(
                train_features[modality], train_masks[modality] & np.isfinite(train_labels[:, index]),
                train_labels[:, index], val_features[modality],
                val_masks[modality] & np.isfinite(val_labels[:, index]), val_labels[:, index], seed,
            )  # fmt: skip
            if value is not None:
                metrics[f"{prefix}/{modality}/{finding}/auroc"] = value
                scores.append(value)
        if scores:
            metrics[f"{prefix}/{modality}/{MACRO}"] = float(np.mean(scores))
    return metrics


def _probe_one(
    train_x: np.ndarray,
    train_keep: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_keep: np.ndarray,
    val_y: np.ndarray,
    seed: int,
) -> float | None:
    """The held-out AUROC of one finding's probe, or None when either split lacks the rows to measure it."""
    fit_y, score_y = train_y[train_keep] > 0.5, val_y[val_keep] > 0.5
    if min(fit_y.sum(), (~fit_y).sum()) < MIN_CLASS_ROWS or min(score_y.sum(), (~score_y).sum()) < 1:
        return None
    fit_x, score_x = train_x[train_keep].astype(np.float64), val_x[val_keep].astype(np.float64)
    if not (np.isfinite(fit_x).all() and np.isfinite(score_x).all()):
        return None  # a diverged model: the loss and retrieval metrics already say so
    probe = probe_pipeline(PROBE_C, seed, MAX_ITER).fit(fit_x, fit_y)
    scores = probe.decision_function(score_x)[:, None]  # (N, 1)
    return float(auroc(score_y[:, None].astype(np.float64), scores)[0])
