"""Evaluation on embeddings: classification metrics with bootstrap CIs, zero-shot, retrieval, linear probe, plots.

Pure numpy / torch / scikit-learn / matplotlib on embedding arrays: nothing here knows about a modality, so every
recipe (zero-shot diagnosis, report-to-scan retrieval, cell-type probing) scores its embeddings the same way.
"""

from __future__ import annotations

from .metrics import accuracy, auroc, bootstrap_ci, confusion, macro_f1
from .plots import EMBEDDING_MAP_METHODS, plot_confusion, plot_embedding_map, plot_training_curve
from .probe import linear_probe
from .retrieval import mean_average_precision, median_rank, recall_at_k, retrieval_ranks, similarity
from .zero_shot import class_embeddings, zero_shot_predict, zero_shot_scores

__all__ = [
    "EMBEDDING_MAP_METHODS",
    "accuracy",
    "auroc",
    "bootstrap_ci",
    "class_embeddings",
    "confusion",
    "linear_probe",
    "macro_f1",
    "mean_average_precision",
    "median_rank",
    "plot_confusion",
    "plot_embedding_map",
    "plot_training_curve",
    "recall_at_k",
    "retrieval_ranks",
    "similarity",
    "zero_shot_predict",
    "zero_shot_scores",
]
