"""Retrieval with the modality gap removed, reported beside the plain numbers (``remove_gap: true``).

``gap.py`` centres each modality on its own centroid and re-normalises. The centroids belong to the model, so they
are estimated on a *reference* split (validation by default, as a deployed search would estimate them once) and
reused for every evaluated query; ``gap_centroids: evaluated`` takes them from the evaluated pairs themselves
(label-free but transductive: the report says so). This module chooses and embeds the reference rows and draws the
side-by-side table; the recipe scores both versions with the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..config import ConfigError
from ..embedding import EmbeddedRows, LoaderOptions, embed_split
from .evaluation_data import EvaluationData, check_split_name
from .gap import modality_centroid, remove_modality_gap
from .report import ReportSection, format_ci

EVALUATED = "evaluated"  # gap_centroids value: the centroids of the evaluated pairs themselves (transductive)


def check_gap_centroids(reference: str) -> str:
    """A valid ``gap_centroids`` value (a split name, "all" or "evaluated"), checked before anything is embedded."""
    if reference != EVALUATED:
        check_split_name(reference, "gap_centroids")
    return reference


def gap_reference(
    model: torch.nn.Module,
    data: EvaluationData,
    modalities: Sequence[str],
    reference: str,
    evaluated: EmbeddedRows,
    evaluated_split: str,
    options: LoaderOptions,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Each modality's centroid on the reference rows, and a record of where they came from.

    Args:
        model: the evaluated model.
        data: the opened manifest.
        modalities: the modalities to centre.
        reference: a split name ("train", "val", "test", "all") or ``"evaluated"``.
        evaluated: the evaluated pairs (used when ``reference`` is "evaluated" or the evaluated split itself).
        evaluated_split: the recipe's ``split``.
        options: how reference rows are loaded.

    Returns:
        ``({modality: (D,) centroid}, {"centroids": reference, "transductive": bool, "rows": {modality: count}})``.
    """
    if reference == EVALUATED or reference == evaluated_split:
        rows, transductive = evaluated, True
    else:
        split = check_split_name(reference, "gap_centroids")
        rows, _ = embed_split(model, data.dataset(model, modalities, split), modalities, options)
        transductive = False
    centroids, counts = {}, {}
    for name in modalities:
        counts[name] = int(rows.present[name].sum()) if len(rows) else 0
        if counts[name] == 0:
            raise ConfigError(f"gap_centroids: split {reference!r} has no row with {name} to estimate a centroid from")
        centroids[name] = modality_centroid(rows.embeddings[name], rows.present[name])
    return centroids, {"centroids": reference, "transductive": transductive, "rows": counts}


def without_gap(embeddings: Any, centroid: torch.Tensor) -> np.ndarray:
    """(N, D) embeddings centred on ``centroid`` and re-normalised, as float32 numpy for the retrieval metrics."""
    return remove_modality_gap(embeddings, centroid).numpy().astype(np.float32)


def gap_removed_section(
    plain: Mapping[str, Mapping[str, Any]], removed: Mapping[str, Mapping[str, Any]], record: Mapping[str, Any]
) -> ReportSection:
    """Plain and gap-removed numbers side by side, per direction and metric (95% CIs)."""
    rows = []
    for direction, entries in plain.items():
        for name, entry in entries.items():
            if isinstance(entry, Mapping) and "value" in entry:
                rows.append([direction, name, format_ci(entry), format_ci(removed.get(direction, {}).get(name))])
    where = (
        "the evaluated pairs themselves (transductive: label-free, but not how a deployed search estimates them)"
        if record["transductive"]
        else f"the '{record['centroids']}' split ({', '.join(f'{n}: {c} rows' for n, c in record['rows'].items())})"
    )
    return ReportSection(
        "Retrieval with the modality gap removed",
        [
            "Each modality centred on its own centroid and re-normalised (docs/diagnostics.md). Centroids from "
            f"{where}. Better numbers on the right mean the gap was costing retrieval; measure on validation before "
            "switching a deployed search to it."
        ],
        ["direction", "metric", "plain (95% CI)", "gap removed (95% CI)"],
        rows,
    )


def same_modality_section(results: Mapping[str, Mapping[str, Any]]) -> ReportSection:
    """Same-modality retrieval (study -> study) per modality, with the patient policy and counts."""
    rows, notes = [], []
    for modality, entry in results.items():
        if "skipped" in entry:
            notes.append(f"{modality}: not scored ({entry['skipped']}).")
            continue
        for name, value in entry.items():
            if isinstance(value, Mapping):
                rows.append([f"{modality} -> {modality}", name, format_ci(value)])
        notes.append(
            f"{modality}: {entry['n_scored']} queries scored, {entry['n_without_positive']} without a match in their "
            f"gallery; relevant = {entry['relevance']}; a patient's other studies: {entry['same_patient']}."
        )
    return ReportSection(
        "Same-modality retrieval",
        [
            "Each study queries every other study of its modality (never itself). With same_patient 'exclude' a "
            "patient's other studies are left out of the gallery, so recognising the patient earns nothing.",
            *notes,
        ],
        ["search", "metric", "value (95% CI)"],
        rows,
    )
