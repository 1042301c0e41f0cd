"""``SignalLayout``: tokens along time, each covering a span of samples of every lead (ECG time tokens).

The ECG encoders give one token per time window of all leads together (a ViT time patch, or a position of the last
1-D feature map), so a token's score belongs to a time span, not to a lead: the figure draws every lead's trace with
the same heat band behind it, and says so. Windows past the record's real end (padding) have no score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .layout import HEAT_ALPHA, HEAT_COLORMAP, add_colorbar, color_limits, new_figure, save_figure


@dataclass(frozen=True)
class SignalLayout:
    """Time tokens over a multi-lead recording.

    Attributes:
        stride: samples per token (the ViT patch, or the CNN's total downsampling).
        traces: (L, N) the model's input, per lead (after its resampling and normalisation).
        leads: lead names, one per row of ``traces``.
        lead_present: (L,) True for the leads the record has (absent leads are zeros and are not drawn).
        sampling_rate: samples per second, to label time in seconds.
        valid_samples: samples of real signal; the rest is padding.
    """

    stride: int
    traces: np.ndarray
    leads: Sequence[str]
    lead_present: np.ndarray
    sampling_rate: float
    valid_samples: int

    kind = "signal"

    def __post_init__(self) -> None:
        if self.traces.ndim != 2 or len(self.leads) != self.traces.shape[0] or self.stride < 1:
            raise ValueError(f"a signal layout needs (leads, samples) traces and names; got {self.traces.shape}")

    @property
    def token_count(self) -> int:
        return math.ceil(self.traces.shape[1] / self.stride)

    def to_input(self, scores: np.ndarray) -> np.ndarray:
        """(T,) scores -> (N,) one score per sample; NaN past the real signal."""
        samples = self.traces.shape[1]
        per_sample = np.repeat(np.asarray(scores, dtype=np.float32), self.stride)[:samples]  # (N,)
        per_sample[self.valid_samples :] = np.nan
        return per_sample

    def region(self, token: int) -> dict[str, Any]:
        start = int(token) * self.stride
        stop = min(start + self.stride, self.traces.shape[1])
        return {"token": int(token), "samples": [start, stop],
                "seconds": [round(start / self.sampling_rate, 4), round(stop / self.sampling_rate, 4)]}  # fmt: skip

    def render(self, scores: np.ndarray, title: str, path: Path) -> None:
        heat = self.to_input(scores)  # (N,)
        low, high = color_limits(heat)
        leads = [index for index in range(len(self.leads)) if self.lead_present[index]]
        seconds = self.traces.shape[1] / self.sampling_rate
        figure = new_figure(10.0, 0.55 * max(len(leads), 1) + 1.2)
        axes = figure.add_subplot(1, 1, 1)
        band = np.ma.masked_invalid(heat[None, :])  # (1, N) padding left blank
        spacing = 3.0  # traces are normalised per lead: 3 units apart keeps neighbours from overlapping
        extent = (0.0, seconds, -spacing * (len(leads) - 0.5), spacing * 0.5)
        axes.imshow(band, aspect="auto", cmap=HEAT_COLORMAP, vmin=low, vmax=high, alpha=HEAT_ALPHA,
                            extent=extent, interpolation="nearest")  # fmt: skip
        time = np.arange(self.traces.shape[1]) / self.sampling_rate
        for row, lead in enumerate(leads):
            trace = np.clip(self.traces[lead], -spacing / 2, spacing / 2)
            axes.plot(time, trace - spacing * row, color="black", linewidth=0.5)
        axes.set_yticks([-spacing * row for row in range(len(leads))], [self.leads[lead] for lead in leads])
        axes.set_xlabel("seconds (the band is one score per time window, shared by all leads)")
        axes.set_title(title, fontsize=9)
        add_colorbar(figure, axes, low, high)
        save_figure(figure, path)
