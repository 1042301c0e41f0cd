"""Regression probes of a recipe: ``target:<name>`` columns predicted from frozen embeddings, scored and drawn.

``regression.regression_probe`` fits and scores one ridge probe per target; this module feeds it a recipe's embedded
splits (training rows fit, validation rows choose the penalty, test rows score once), writes ``regression.png``
(predicted vs true on the test rows, one panel per target) and builds the report section. The predictions stay out
of metrics.json (one per test row: they belong to an export, not to a summary).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError
from ..embedding import EmbeddedRows
from .plots import new_figure, save_figure
from .regression import regression_probe
from .report import ReportSection, format_ci

SCATTER_FILE = "regression.png"
PANEL_COLUMNS = 3


def target_columns(available: Sequence[str], requested: Sequence[str]) -> list[int]:
    """Indices of ``requested`` targets in ``available`` (``Manifest.target_names``); all of them when empty."""
    names = list(available)
    if not requested:
        return list(range(len(names)))
    indices = []
    for name in requested:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"the manifest has no column 'target:{name}'{hint} Targets in the manifest: "
                f"{', '.join(names) or 'none'}"
            )
        indices.append(names.index(name))
    return indices


def probe_targets(
    names: Sequence[str],
    columns: Sequence[int],
    modality: str,
    train: EmbeddedRows,
    val: EmbeddedRows,
    test: EmbeddedRows,
    out: str | os.PathLike,
    ridge_alpha: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[dict[str, Any], list[ReportSection]]:
    """Ridge probes of the chosen targets on ``modality``'s frozen embeddings, with the scatter plot and section.

    Args:
        names: the probed targets' names; columns: their indices in the rows' ``targets``.
        modality: whose embeddings are probed.
        train, val, test: embedded splits: fit, penalty choice (when at least 3 rows know the target), score.
        out: where ``regression.png`` is written.
        ridge_alpha: a fixed penalty (None = chosen on ``val``, else by patient-grouped CV on ``train``).
        n_boot, seed, confidence: of the patient bootstrap.

    Returns:
        ``(regression_probe(...)["targets"] + {"scatter": file name}, [report section])``.
    """
    result = regression_probe(
        list(names),
        train.embeddings[modality],
        train.targets[:, columns],
        test.embeddings[modality],
        test.targets[:, columns],
        list(test.patients),
        train_patients=list(train.patients),
        val_x=val.embeddings[modality] if len(val) else None,
        val_y=val.targets[:, columns] if len(val) else None,
        ridge_alpha=ridge_alpha,
        n_boot=n_boot,
        seed=seed,
        alpha=1 - confidence,
    )
    predictions = result.pop("predictions")  # (N_test, T)
    result["scatter"] = plot_predictions(names, test.targets[:, columns], predictions, result["targets"], out).name
    return result, [regression_section(result, modality)]


def plot_predictions(
    names: Sequence[str], truth: Any, predictions: Any, results: Mapping[str, Any], out: str | os.PathLike
) -> Path:
    """Predicted vs true on the test rows, one panel per target, with the identity line and R^2 (95% CI)."""
    truth, predictions = np.asarray(truth, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    columns = min(PANEL_COLUMNS, len(names))
    lines = math.ceil(len(names) / columns)
    figure = new_figure(4.2 * columns, 4.0 * lines)
    figure.subplots_adjust(wspace=0.35, hspace=0.45)  # room for each panel's axis labels
    for k, name in enumerate(names):
        axes = figure.add_subplot(lines, columns, k + 1)
        known = ~np.isnan(truth[:, k])
        axes.scatter(truth[known, k], predictions[known, k], s=10, alpha=0.6)
        if known.any():
            low = min(truth[known, k].min(), predictions[known, k].min())
            high = max(truth[known, k].max(), predictions[known, k].max())
            axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
        axes.set_title(f"{name}: R² {format_ci(results[name].get('r2'), 2)}", fontsize=9)
        axes.set_xlabel("true")
        axes.set_ylabel("predicted")
    return save_figure(figure, Path(out) / SCATTER_FILE)


def regression_section(result: Mapping[str, Any], modality: str) -> ReportSection:
    """One row per target: rows, R^2, MAE (vs the mean baseline), Pearson r, penalty."""
    rows = []
    for name, entry in result["targets"].items():
        if "skipped" in entry:
            rows.append([name, "0", "n/a", "n/a", "n/a", "n/a", entry["skipped"]])
            continue
        rows.append(
            [
                name,
                f"{entry['n_rows']} ({entry['n_patients']} patients)",
                format_ci(entry["r2"]),
                format_ci(entry["mae"]),
                f"{entry['mean_baseline']['mae']:.3f}",
                format_ci(entry["pearson_r"]),
                f"{entry['ridge_alpha']:g} ({entry['alpha_source']})",
            ]
        )
    return ReportSection(
        "Regression probes (continuous targets)",
        [
            f"Ridge regression on standardised frozen {modality} embeddings, one probe per target:<name> column, "
            "fitted on the training rows, penalty chosen on validation rows (or by cross-validation grouped by "
            "patient), scored once on the evaluated rows. R² 0 = no better than the mean, negative = worse; MAE is in "
            "the target's own unit, next to the MAE of always predicting the training mean. 95% CIs resample patients."
        ],
        ["target", "test rows", "R² (95% CI)", "MAE (95% CI)", "mean-baseline MAE", "Pearson r (95% CI)", "penalty"],
        rows,
        [result["scatter"]],
    )
