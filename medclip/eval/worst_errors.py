"""Each finding's worst mistakes, by score, linked to thumbnails: where a reader starts looking for why a model fails.

For every finding of a zero-shot (or probe) evaluation:

- worst false positives: the known-negative rows with the highest scores;
- worst false negatives: the known-positive rows with the lowest scores.

They are ranked by score, not by an operating threshold, so the list is the same whichever threshold a site picks.
The metric file and the shared report carry 1-based manifest row numbers and scores only; the thumbnails they link
to are drawn by the renderer registry (``thumbnails.py``) into ``out/local/thumbnails/row-<N>.png``, named by row
number (never by patient id or file name), in the local-only folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .browser import local_folder
from .report import Link, ReportSection
from .thumbnails import render_rows

KINDS = {"false_positives": "false positive", "false_negatives": "false negative"}


def worst_errors(
    findings: Sequence[str], labels: np.ndarray, scores: np.ndarray, row_numbers: np.ndarray, count: int
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """finding -> {"false_positives": [{"row", "score"}], "false_negatives": [...]}, the ``count`` worst of each.

    Args:
        findings: K finding names.
        labels: (N, K) 1 / 0 / NaN (unknown rows are never counted as mistakes).
        scores: (N, K) the model's scores.
        row_numbers: (N,) 1-based manifest rows.
        count: mistakes kept per finding and kind.
    """
    result = {}
    for k, finding in enumerate(findings):
        entries = {}
        for kind, truth, sign in (("false_positives", 0.0, -1.0), ("false_negatives", 1.0, 1.0)):
            candidates = np.flatnonzero(labels[:, k] == truth)
            order = candidates[np.argsort(sign * scores[candidates, k], kind="stable")][:count]
            entries[kind] = [{"row": int(row_numbers[i]), "score": float(scores[i, k])} for i in order]
        result[finding] = entries
    return result


def write_error_thumbnails(
    out: str | os.PathLike,
    errors: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    plugin: Any,
    modality: str,
    references: Mapping[int, Mapping[str, Any]],
) -> dict[int, str]:
    """Draw every listed row once into ``out/local/thumbnails/row-<N>.png``; row -> path relative to ``out``."""
    rows = [entry["row"] for kinds in errors.values() for entries in kinds.values() for entry in entries]
    folder = local_folder(out) / "thumbnails"
    folder.mkdir(exist_ok=True)
    modality_references = {row: refs[modality] for row, refs in references.items() if modality in refs}
    written = {}
    for row, png in render_rows(plugin, modality, modality_references, rows).items():
        (folder / f"row-{row}.png").write_bytes(png)
        written[row] = f"{folder.parent.name}/{folder.name}/row-{row}.png"
    return written


def errors_section(
    errors: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], thumbnails: Mapping[int, str]
) -> ReportSection:
    """A report table: finding, kind, rank, row (linked to its thumbnail when drawn), score."""
    rows: list[list[str | Link]] = []
    for finding, kinds in errors.items():
        for kind, entries in kinds.items():
            for rank, entry in enumerate(entries, start=1):
                row = entry["row"]
                text = f"row {row}"
                cell: str | Link = Link(text, thumbnails[row]) if row in thumbnails else text
                rows.append([finding, KINDS[kind], str(rank), cell, f"{entry['score']:.3f}"])
    paragraphs = [
        "Per finding, the known-negative rows the model scored highest (false positives) and the known-positive rows "
        "it scored lowest (false negatives), by score rather than at a threshold. Rows are 1-based manifest rows."
    ]
    if thumbnails:
        paragraphs.append(
            "The links open thumbnails in local/thumbnails/: they show patient images and stay on this machine "
            "(local/ must not be shared; a copy of this report without local/ has dead links, nothing else)."
        )
    return ReportSection("Worst mistakes per finding", paragraphs, ["finding", "mistake", "rank", "row", "score"], rows)
