"""Evaluation on embeddings: classification metrics with bootstrap CIs, zero-shot, retrieval, linear probe, plots.

Pure numpy / torch / scikit-learn / matplotlib on embedding arrays: nothing here knows about a modality, so every
recipe (zero-shot diagnosis, report-to-scan retrieval, cell-type probing) scores its embeddings the same way.
"""

from __future__ import annotations

from .calibration import expected_calibration_error, reliability_curve
from .classification import THRESHOLD_RULES, average_precision, choose_threshold, threshold_metrics
from .diagnostics import embedding_health, health_scalars, modality_gap
from .findings import choose_thresholds, evaluate_findings, evaluate_multiclass
from .gap import gap_removed, modality_centroid, remove_modality_gap
from .hygiene import SeenPatientsError, check_unseen_patients, checkpoint_sha256, provenance_record
from .index import INDEXES, EmbeddingIndex, build_index, load_index
from .metrics import accuracy, auroc, bootstrap_ci, confusion, macro_f1
from .plots import EMBEDDING_MAP_METHODS, plot_confusion, plot_embedding_map, plot_training_curve
from .probe import linear_probe
from .prompts import PromptSet, PromptSetError, read_prompt_set
from .ranking import average_precision_per_query, finding_relevance, label_aware_retrieval, ndcg_per_query
from .regression import regression_probe
from .retrieval import (
    mean_average_precision,
    median_rank,
    recall_at_k,
    retrieval_ranks,
    same_modality_per_query,
    same_modality_retrieval,
    similarity,
)
from .zero_shot import class_embeddings, zero_shot_predict, zero_shot_scores
from .zero_shot_binary import binary_zero_shot_scores

__all__ = [
    "embedding_health",
    "gap_removed",
    "health_scalars",
    "modality_centroid",
    "modality_gap",
    "regression_probe",
    "remove_modality_gap",
    "same_modality_per_query",
    "same_modality_retrieval",
    "EMBEDDING_MAP_METHODS",
    "INDEXES",
    "THRESHOLD_RULES",
    "EmbeddingIndex",
    "PromptSet",
    "PromptSetError",
    "SeenPatientsError",
    "average_precision",
    "average_precision_per_query",
    "binary_zero_shot_scores",
    "build_index",
    "check_unseen_patients",
    "checkpoint_sha256",
    "choose_threshold",
    "choose_thresholds",
    "evaluate_findings",
    "evaluate_multiclass",
    "expected_calibration_error",
    "finding_relevance",
    "label_aware_retrieval",
    "load_index",
    "ndcg_per_query",
    "provenance_record",
    "read_prompt_set",
    "reliability_curve",
    "threshold_metrics",
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
