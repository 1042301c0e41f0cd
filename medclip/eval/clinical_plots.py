"""PNG figures of the clinical recipes: ROC curves, reliability diagrams, retrieval examples, few-shot curves.

Drawn on matplotlib's Agg canvas like ``plots.py`` (no pyplot, no window, no global backend). Figures carry only
finding names, scores and pseudonyms: never report text or an image, which could hold patient identifiers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Rectangle
from sklearn.metrics import roc_curve

from .calibration import reliability_curve
from .plots import new_figure, save_figure

MAX_CURVES = 12  # more lines than this on one axis are unreadable; the report table still lists every finding


def plot_roc_curves(
    finding_names: Sequence[str], y: Any, scores: Any, auroc_text: Mapping[str, str], path: str | os.PathLike
) -> Path:
    """One ROC curve per finding (its known rows), labelled with AUROC and its confidence interval.

    Args:
        finding_names: K names.
        y: (N, K) 0 / 1 / NaN labels.
        scores: (N, K) scores.
        auroc_text: finding -> legend text such as "0.91 (0.86-0.95)".
        path: where to write the PNG.
    """
    y, scores = np.asarray(y, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    figure = new_figure(6.0, 5.5)
    axes = figure.add_subplot()
    drawn = 0
    for k, name in enumerate(finding_names):
        known = ~np.isnan(y[:, k])
        labels = y[known, k]
        if drawn == MAX_CURVES or labels.min(initial=1) == labels.max(initial=0):
            continue  # no curve without both classes
        false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores[known, k])
        axes.plot(false_positive_rate, true_positive_rate, linewidth=1.4, label=f"{name}: {auroc_text.get(name, '')}")
        drawn += 1
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1.0, label="chance")
    axes.set_xlabel("1 - specificity (false positive rate)")
    axes.set_ylabel("sensitivity (true positive rate)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_title("ROC per finding (test patients), AUROC with 95% CI")
    axes.legend(fontsize=7, loc="lower right")
    return save_figure(figure, path)


def plot_reliability(
    curves: Mapping[str, tuple[Any, Any]], ece_text: Mapping[str, str], path: str | os.PathLike, n_bins: int = 10
) -> Path:
    """Reliability diagram: observed frequency against predicted probability, one line per curve.

    Args:
        curves: name -> ``(outcome (N,) 0/1, probability (N,))``.
        ece_text: name -> legend text such as "ECE 0.08".
        path: where to write the PNG.
        n_bins: equal-width probability bins.
    """
    figure = new_figure(5.5, 5.5)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1.0, label="perfect calibration")
    for drawn, (name, (outcome, probability)) in enumerate(curves.items()):
        if drawn == MAX_CURVES or len(outcome) == 0:
            continue
        curve = reliability_curve(outcome, probability, n_bins)
        axes.plot(
            curve["mean_probability"],
            curve["observed_frequency"],
            marker="o",
            markersize=3,
            linewidth=1.2,
            label=f"{name}: {ece_text.get(name, '')}",
        )
    axes.set_xlabel("predicted probability")
    axes.set_ylabel("observed frequency")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_title("Reliability (test patients)")
    axes.legend(fontsize=7, loc="upper left")
    return save_figure(figure, path)


def plot_retrieval_examples(
    queries: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "Example queries and top hits"
) -> Path:
    """A grid: one row per example query, one cell per top hit, coloured by whether the hit is right.

    Args:
        queries: each ``{"query": pseudonym, "findings": text, "hits": [{"study", "score", "match"}]}`` where match
            is "paired" (the query's own study), "same findings", or "other".
        path: where to write the PNG.
        title: figure title.
    """
    colours = {"paired": "#4caf50", "same findings": "#c5e1a5", "other": "#eeeeee"}
    n_rows = max(1, len(queries))
    n_cols = max([len(query["hits"]) for query in queries] + [1])
    figure = new_figure(2.0 + 1.7 * n_cols, 0.8 + 0.7 * n_rows)
    axes = figure.add_subplot()
    axes.set_xlim(0, n_cols + 1.3)
    axes.set_ylim(n_rows, 0)
    axes.axis("off")
    for row, query in enumerate(queries):
        axes.text(0.05, row + 0.5, f"{query['query']}\n{query['findings']}", fontsize=6.5, va="center")
        for col, hit in enumerate(query["hits"]):
            x = 1.3 + col
            axes.add_patch(Rectangle((x + 0.03, row + 0.06), 0.94, 0.88, color=colours.get(hit["match"], "#eeeeee")))
            axes.text(
                x + 0.5,
                row + 0.5,
                f"#{col + 1} {hit['study']}\n{hit['score']:.3f}\n{hit['match']}",
                fontsize=6,
                ha="center",
                va="center",
            )
    axes.set_title(f"{title} (green: paired study, light green: same findings)", fontsize=9)
    return save_figure(figure, path)


def plot_few_shot(
    curves: Mapping[str, Mapping[float, Sequence[float]]], path: str | os.PathLike, metric: str = "macro AUROC"
) -> Path:
    """Metric against the fraction of training labels, mean and range over seeds, one line per curve.

    Args:
        curves: name -> {fraction of training patients -> metric value of each seed}.
        path: where to write the PNG.
        metric: y-axis label.
    """
    figure = new_figure(5.5, 4.0)
    axes = figure.add_subplot()
    for name, by_fraction in curves.items():
        fractions = sorted(by_fraction)
        values = [np.asarray(by_fraction[f], dtype=np.float64) for f in fractions]
        means = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values])
        lows = np.array([np.nanmin(v) if np.isfinite(v).any() else np.nan for v in values])
        highs = np.array([np.nanmax(v) if np.isfinite(v).any() else np.nan for v in values])
        axes.errorbar(fractions, means, yerr=[means - lows, highs - means], marker="o", capsize=3, label=name)
    axes.set_xscale("log")
    axes.set_xlabel("fraction of training patients with labels")
    axes.set_ylabel(metric)
    axes.set_title(f"Few-shot probe: {metric} (mean, range over seeds)")
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def plot_findings(
    out: str | os.PathLike,
    finding_names: Sequence[str],
    y: Any,
    scores: Any,
    result: Mapping[str, Any],
    n_bins: int = 10,
) -> list[str]:
    """``roc.png`` and ``reliability.png`` for an ``evaluate_findings`` result; returns the file names."""
    from .report import format_ci

    y, scores = np.asarray(y, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    findings = result["findings"]
    plot_roc_curves(
        finding_names, y, scores, {n: format_ci(findings[n]["auroc"], 2) for n in finding_names}, Path(out) / "roc.png"
    )
    curves = {}
    for k, name in enumerate(finding_names):
        known = ~np.isnan(y[:, k])
        curves[name] = (y[known, k], scores[known, k])
    ece = {n: f"ECE {format_ci(findings[n]['ece'], 2)}" for n in finding_names}
    plot_reliability(curves, ece, Path(out) / "reliability.png", n_bins)
    return ["roc.png", "reliability.png"]
