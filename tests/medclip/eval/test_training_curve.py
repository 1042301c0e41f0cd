"""The training curve shows the raw logged loss and its bias-corrected exponential moving average."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medclip.eval import plots
from medclip.eval.plots import exponential_moving_average, plot_training_curve


def test_ema_is_the_bias_corrected_one():
    values = np.random.default_rng(0).normal(3.0, 0.5, size=200)
    expected = pd.Series(values).ewm(span=10, adjust=True).mean().to_numpy()
    np.testing.assert_allclose(exponential_moving_average(values, 10), expected, rtol=1e-12)
    assert exponential_moving_average([5.0, 1.0], 10)[0] == 5.0  # starts at the first loss, not pulled to zero


def test_a_skipped_non_finite_step_is_left_out():
    smoothed = exponential_moving_average([2.0, float("nan"), 2.0, 2.0], 3)
    np.testing.assert_allclose(smoothed, [2.0, 2.0, 2.0, 2.0])


def test_the_png_has_raw_and_smoothed_curves(tmp_path, monkeypatch):
    figures = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: figures.append(figure) or save(figure, path))
    steps = np.arange(1, 101)
    path = plot_training_curve(steps, 3.0 * np.exp(-steps / 40) + 0.1 * np.sin(steps), tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [line.get_label() for line in figures[0].axes[0].get_lines()]
    assert labels == ["loss (raw)", "loss (EMA, span 5)"]
    raw, smooth = (line.get_ydata() for line in figures[0].axes[0].get_lines())
    assert np.std(np.diff(smooth)) < np.std(np.diff(raw))  # smoother than the raw curve
