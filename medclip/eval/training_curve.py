"""The training curve a person looks at: the loss (raw and smoothed), and retrieval on training vs validation
patients against chance, from the records of ``train_log.jsonl``.

A falling loss alone says nothing about generalisation; the second panel shows whether validation retrieval rises
above chance, and how far the training patients' retrieval runs ahead of it (memorisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .validation_probe import macro_aurocs

SMOOTHING = 0.9  # exponential moving average weight of the smoothed loss


def smoothed(values: Sequence[float], weight: float = SMOOTHING) -> np.ndarray:
    """Bias-corrected exponential moving average (TensorBoard's smoothing)."""
    average, out = 0.0, []
    for index, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**index))
    return np.asarray(out)


def plot_training_and_validation(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Up to three panels: loss per step (raw, smoothed, validation loss); mean R@1 on training / validation
    patients with the chance level (when the log has validation records); the label probes' held-out macro AUROC
    per modality (when the manifest had ``label:`` columns, ``eval.validation_probe``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    training = [r for r in records if r.get("loss") is not None]
    validation = [r for r in records if r.get("val/mean_R@1") is not None or r.get("val/loss") is not None]
    probes = sorted({modality for r in validation for modality in macro_aurocs(r)})
    panels = 1 + bool(validation) + bool(probes)
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    loss_axis = axes[0][0]
    if training:
        steps = [r["step"] for r in training]
        losses = [float(r["loss"]) for r in training]
        loss_axis.plot(steps, losses, color="tab:blue", alpha=0.3, label="training loss")
        loss_axis.plot(steps, smoothed(losses), color="tab:blue", label="training loss (smoothed)")
    with_loss = [r for r in validation if r.get("val/loss") is not None]
    if with_loss:
        loss_axis.plot([r["step"] for r in with_loss], [r["val/loss"] for r in with_loss], "o-", color="tab:orange",
                       label="validation loss")  # fmt: skip
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("loss")
    loss_axis.legend(loc="upper right")
    if validation:
        axis = axes[0][1]
        steps = [r["step"] for r in validation]
        for key, label, color in (("train/mean_R@1", "training patients", "tab:blue"),
                                  ("val/mean_R@1", "validation patients", "tab:orange")):  # fmt: skip
            values = [r.get(key) for r in validation]
            if any(value is not None for value in values):
                axis.plot(steps, [np.nan if v is None else v for v in values], "o-", color=color, label=label)
        chance = [np.mean([v for k, v in r.items() if k.startswith("val/") and k.endswith("/chance/R@1")] or [np.nan])
                  for r in validation]  # fmt: skip
        axis.plot(steps, chance, "--", color="gray", label="chance")
        axis.set_xlabel("step")
        axis.set_ylabel("mean cross-modal R@1")
        axis.set_ylim(0, 1)
        axis.legend(loc="upper left")
        axis.set_title("retrieval: training vs held-out patients")
    if probes:
        _plot_probes(axes[0][2], validation, probes)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _plot_probes(axis: Any, validation: Sequence[Mapping[str, Any]], modalities: Sequence[str]) -> None:
    """Held-out macro AUROC of each modality's label probe per validation, with 0.5 (nothing learnt) marked."""
    steps = [r["step"] for r in validation]
    per_record = [macro_aurocs(r) for r in validation]
    for modality in modalities:
        axis.plot(steps, [probes.get(modality, np.nan) for probes in per_record], "o-", label=modality)
    axis.axhline(0.5, linestyle="--", color="gray", label="chance")
    axis.set_xlabel("step")
    axis.set_ylabel("label probe macro AUROC")
    axis.set_ylim(0.3, 1.0)
    axis.legend(loc="upper left")
    axis.set_title("findings in each tower, held-out patients")
