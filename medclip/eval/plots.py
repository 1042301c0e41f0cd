"""PNG plots for run reports: confusion matrix, 2-D map of the joint embedding, training curve.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), never through pyplot:
no window ever opens, no global backend is switched, and figures are freed when they go out of scope, which
matters on headless training nodes and in long sweeps.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..registry import Registry

DPI = 120  # sharp enough for reports and slides, small enough to keep run folders light
MARKERS = ("o", "^", "s", "D", "P", "X", "v", "*")  # one per modality in the embedding map
UMAP_MIN_POINTS = 5  # UMAP's spectral layout needs a handful of points; below this the map uses PCA


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas (no pyplot, see the module docstring); every
    report plot here and in ``clinical_plots`` starts from one."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` as a PNG at the reports' resolution (``DPI``), creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    return path


def plot_confusion(
    matrix: Any,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "Confusion matrix",
    normalize: bool = True,
) -> Path:
    """Heat map of a confusion matrix with the value written in every cell.

    With ``normalize`` each row is divided by its total, so a cell reads "fraction of class i predicted as j" and
    rare classes are as readable as common ones; a class without rows shows "n/a" rather than a made-up 0.

    Args:
        matrix: (C, C) counts, true classes as rows (as ``metrics.confusion`` returns).
        class_names: C names, in index order.
        path: where to write the PNG.
        title: figure title.
        normalize: show row fractions instead of counts.

    Returns:
        The path written.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n_classes = len(class_names)
    if matrix.ndim != 2 or matrix.shape != (n_classes, n_classes):
        raise ValueError(f"matrix must be (C, C) with C = {n_classes} class names, got shape {matrix.shape}")
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)  # (C, 1)
        values = np.divide(matrix, totals, out=np.full_like(matrix, np.nan), where=totals > 0)
        title = f"{title} (row-normalised)"
    else:
        values = matrix
    side = max(4.0, 0.6 * n_classes + 2.0)
    figure = new_figure(side + 1.0, side)
    axes = figure.add_subplot()
    image = axes.imshow(np.nan_to_num(values), cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(n_classes), labels=class_names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(n_classes), labels=class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    font_size = max(5.0, 10.0 - 0.25 * n_classes)  # shrink cell text as the grid gets denser
    threshold = np.nanmax(values) / 2 if np.any(np.isfinite(values)) else 0.0
    for i in range(n_classes):
        for j in range(n_classes):
            value = values[i, j]
            text = "n/a" if np.isnan(value) else (f"{value:.2f}" if normalize else f"{int(value)}")
            color = "white" if np.isfinite(value) and value > threshold else "black"  # contrast on dark cells
            axes.text(j, i, text, ha="center", va="center", color=color, fontsize=font_size)
    return save_figure(figure, path)


# 2-D projections of the embedding map, by method name: each takes (N, D) unit-norm rows and a seed, returns (N, 2).
EMBEDDING_MAP_METHODS: Registry[Callable[[np.ndarray, int], np.ndarray]] = Registry("embedding map method")


@EMBEDDING_MAP_METHODS.register("pca")
def _project_pca(embeddings: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(embeddings)  # (N, 2)


@EMBEDDING_MAP_METHODS.register("umap")
def _project_umap(embeddings: np.ndarray, seed: int) -> np.ndarray:
    import umap  # numba-compiled and slow to import, so only loaded when a UMAP map is drawn

    n_neighbors = min(15, len(embeddings) - 1)  # UMAP's default 15, capped for small sets
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed)
    with warnings.catch_warnings():
        # a fixed random_state forces single-threaded UMAP and says so on every call; that is the intent here
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        return reducer.fit_transform(embeddings)  # (N, 2)


def _resolve_method(method: str, n_points: int) -> tuple[str, str]:
    """The method actually used and the reason it differs from the request (empty when it does not)."""
    EMBEDDING_MAP_METHODS.get(method)  # unknown names raise, listing the available ones
    if method == "umap" and importlib.util.find_spec("umap") is None:
        return "pca", "umap-learn not installed"
    if method == "umap" and n_points < UMAP_MIN_POINTS:
        return "pca", f"fewer than {UMAP_MIN_POINTS} points for UMAP"
    return method, ""


def class_colors(n_classes: int) -> np.ndarray:
    """One colour per class (n_classes, 4): tab10 / tab20 while they are enough, then turbo."""
    from matplotlib import colormaps

    name = "tab10" if n_classes <= 10 else "tab20" if n_classes <= 20 else "turbo"
    colormap = colormaps[name]
    if name == "turbo":
        return colormap(np.linspace(0.0, 1.0, n_classes))  # (C, 4) RGBA
    return colormap(np.arange(n_classes))  # (C, 4) RGBA


def plot_embedding_map(
    embeddings: Any,
    labels: Any,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "Joint embedding",
    method: str = "umap",
    modality_marker: Sequence[str] | None = None,
    seed: int = 0,
) -> Path:
    """2-D map of the joint embedding space, coloured by class and optionally shaped by modality.

    Drawing both modalities (e.g. cells and their cell-type text prompts) in one map shows at a glance whether
    the two sides of the alignment landed near each other. Rows are L2-normalised first, since the space is
    compared by cosine similarity. UMAP needs ``umap-learn``; without it (or with very few points) the map falls
    back to PCA, warns, and says so in the title.

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) class indices into ``class_names``.
        class_names: C names, in index order.
        path: where to write the PNG.
        title: figure title; the projection method is appended.
        method: a name in ``EMBEDDING_MAP_METHODS`` ("umap" or "pca").
        modality_marker: optional (N,) modality name per row (e.g. "cell", "text prompt"): one marker shape each.
        seed: random state of the projection, so the same data gives the same picture.

    Returns:
        The path written.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] < 2 or embeddings.shape[1] < 2:
        raise ValueError(f"embeddings must be (N, D) with N >= 2 and D >= 2, got shape {embeddings.shape}")
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("embeddings hold NaN or infinite values")
    labels = np.asarray(labels)
    n_points, n_classes = len(embeddings), len(class_names)
    if labels.shape != (n_points,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be (N,) integer class indices with N = {n_points}, got {labels.shape}")
    if np.any((labels < 0) | (labels >= n_classes)):
        raise ValueError(f"labels hold class indices outside [0, {n_classes})")
    modalities = np.asarray(modality_marker if modality_marker is not None else ["embedding"] * n_points)
    if modalities.shape != (n_points,):
        raise ValueError(f"modality_marker must have one entry per row ({n_points}), got shape {modalities.shape}")
    modality_names = list(dict.fromkeys(modalities.tolist()))  # first-seen order
    if len(modality_names) > len(MARKERS):
        raise ValueError(f"at most {len(MARKERS)} modalities can get distinct markers, got {len(modality_names)}")

    used, reason = _resolve_method(method, n_points)
    if reason:
        warnings.warn(f"embedding map drawn with PCA instead of {method}: {reason}", stacklevel=2)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)  # (N, 1)
    unit = embeddings / np.maximum(norms, 1e-12)
    points = EMBEDDING_MAP_METHODS.get(used)(unit, seed)  # (N, 2)

    colors = class_colors(n_classes)
    figure = new_figure(8.0, 6.5)
    axes = figure.add_subplot()
    largest_group = max(int(np.sum(modalities == name)) for name in modality_names)
    for modality, marker in zip(modality_names, MARKERS, strict=False):
        rows = modalities == modality
        # smaller groups (a few text prompts among thousands of cells) are drawn larger so they stay visible
        size = 14 if rows.sum() == largest_group else 60
        axes.scatter(
            points[rows, 0],
            points[rows, 1],
            c=colors[labels[rows]],
            marker=marker,
            s=size,
            alpha=0.8,
            edgecolors="black" if size > 14 else "none",
            linewidths=0.5,
        )
    class_handles = [
        Line2D([], [], marker="o", linestyle="", color=colors[c], label=class_names[c])
        for c in range(n_classes)
        if np.any(labels == c)
    ]
    class_legend = axes.legend(
        handles=class_handles, title="class", loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8
    )
    if modality_marker is not None:
        axes.add_artist(class_legend)  # a second legend call would otherwise replace the first
        modality_handles = [
            Line2D([], [], marker=marker, linestyle="", color="grey", label=name)
            for name, marker in zip(modality_names, MARKERS, strict=False)
        ]
        axes.legend(handles=modality_handles, title="modality", loc="lower left", bbox_to_anchor=(1.02, 0.0))
    label = used.upper() + (f", {reason}" if reason else "")
    axes.set_title(f"{title} ({label})")
    axes.set_xlabel(f"{used.upper()} 1")
    axes.set_ylabel(f"{used.upper()} 2")
    axes.set_xticks([])
    axes.set_yticks([])
    return save_figure(figure, path)


def exponential_moving_average(values: Sequence[float], span: int) -> np.ndarray:
    """Bias-corrected EMA (TensorBoard's and pandas' ``ewm(span, adjust=True)``): (T,) -> (T,).

    alpha = 2 / (span + 1); dividing by the sum of the weights removes the pull towards zero of the first points, so
    the smoothed curve starts at the first loss. Non-finite values (a skipped step) are left out of the average.
    """
    alpha = 2.0 / (span + 1.0)
    smoothed = np.empty(len(values), dtype=np.float64)
    weighted, weights = 0.0, 0.0
    for index, value in enumerate(np.asarray(values, dtype=np.float64)):
        weighted, weights = weighted * (1.0 - alpha), weights * (1.0 - alpha)
        if np.isfinite(value):
            weighted, weights = weighted + value, weights + 1.0
        smoothed[index] = weighted / weights if weights > 0 else np.nan
    return smoothed


def plot_training_curve(
    steps: Sequence[float],
    losses: Sequence[float] | Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    title: str = "Training loss",
) -> Path:
    """Loss against step: the raw logged values (faint) and their exponential moving average (bold).

    Args:
        steps: (T,) optimisation steps.
        losses: (T,) losses, or a mapping name -> (T,) values for several loss terms (total, contrastive, ...).
        path: where to write the PNG.
        title: figure title.

    Returns:
        The path written.
    """
    steps = np.asarray(steps, dtype=np.float64)
    curves = dict(losses) if isinstance(losses, Mapping) else {"loss": losses}
    if steps.ndim != 1 or len(steps) == 0:
        raise ValueError(f"steps must be a non-empty 1-D sequence, got shape {steps.shape}")
    figure = new_figure(7.0, 4.5)
    axes = figure.add_subplot()
    span = max(2, len(steps) // 20)  # ~5% of the run: smooths step noise, keeps the trend
    for index, (name, values) in enumerate(curves.items()):
        values = np.asarray(values, dtype=np.float64)
        if values.shape != steps.shape:
            raise ValueError(f"loss {name!r} has shape {values.shape} but steps has {steps.shape}")
        color = f"C{index}"
        if len(values) >= 3:
            axes.plot(steps, values, color=color, alpha=0.3, linewidth=0.8, label=f"{name} (raw)")
            axes.plot(steps, exponential_moving_average(values, span), color=color, label=f"{name} (EMA, span {span})")
        else:
            axes.plot(steps, values, color=color, marker="o", markersize=3, label=name)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    return save_figure(figure, path)
