"""Label probes during validation: a logistic regression on training embeddings, scored on validation patients."""

from __future__ import annotations

import numpy as np

from medclip.eval.validation_probe import label_probe_metrics


def _planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 8) features whose first dimension carries finding "a"; finding "b" is carried by nothing."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 2)) < 0.5).astype(np.float32)  # (N, 2)
    features = rng.normal(size=(n, 8)).astype(np.float32)  # (N, 8)
    features[:, 0] += 3.0 * labels[:, 0]
    return features, labels


def test_a_finding_the_embedding_carries_scores_high_and_one_it_lacks_scores_chance():
    train_x, train_y = _planted(200, 0)
    val_x, val_y = _planted(200, 1)
    present = {"ct": np.ones(200, bool)}
    metrics = label_probe_metrics({"ct": train_x}, present, train_y, {"ct": val_x}, present, val_y, ["a", "b"])
    assert metrics["val/probe/ct/a/auroc"] > 0.95
    assert abs(metrics["val/probe/ct/b/auroc"] - 0.5) < 0.12
    assert metrics["val/probe/ct/macro_auroc"] == np.mean(
        [metrics["val/probe/ct/a/auroc"], metrics["val/probe/ct/b/auroc"]]
    )


def test_unknown_labels_absent_rows_and_findings_without_both_classes_are_left_out():
    train_x, train_y = _planted(60, 2)
    val_x, val_y = _planted(40, 3)
    train_y[:, 1] = 0.0
    train_y[:3, 1] = 1.0
    train_y[:2, 1] = np.nan  # one known positive left: too few to fit a probe on
    val_y[:10, 0] = np.nan  # unknown validation labels are not scored
    train_present = np.ones(60, bool)
    train_present[::2] = False  # rows without the modality carry no embedding of it
    metrics = label_probe_metrics(
        {"ct": train_x, "report": train_x}, {"ct": train_present, "report": np.ones(60, bool)}, train_y,
        {"ct": val_x, "report": val_x}, {"ct": np.ones(40, bool), "report": np.ones(40, bool)}, val_y, ["a", "b"],
    )  # fmt: skip
    assert set(metrics) == {
        "val/probe/ct/a/auroc", "val/probe/ct/macro_auroc", "val/probe/report/a/auroc", "val/probe/report/macro_auroc",
    }  # fmt: skip
    # the probe fitted on every row beats (or equals) the one that saw half of them, and both find the finding
    assert metrics["val/probe/ct/a/auroc"] > 0.85 and metrics["val/probe/report/a/auroc"] > 0.85


def test_no_label_columns_means_no_probe_metrics():
    x, _ = _planted(20, 4)
    present = {"ct": np.ones(20, bool)}
    empty = np.zeros((20, 0), np.float32)
    assert label_probe_metrics({"ct": x}, present, empty, {"ct": x}, present, empty, []) == {}
