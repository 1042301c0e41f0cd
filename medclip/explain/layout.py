"""``TokenLayout``: where each encoder token of one input lies in that input, and how its scores are drawn.

A grounding map (``medclip explain``) scores every token of an input against a phrase; to show those scores on the
input, something must know which voxels, pixels, samples or patches a token stands for. That knowledge belongs to the
modality (its encoder decides the token order), so each plugin answers ``Modality.token_layout`` with one of the
layouts of this package; a modality that returns None has no spatial tokens and ``medclip explain`` refuses it.

Every layout implements the same three methods: ``to_input`` (token scores -> a map over the input), ``region``
(a token index -> its position in words a reader can find on the figure) and ``render`` (the overlay PNG).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TokenLayout(Protocol):
    """The token -> input mapping of one input (see the module docstring)."""

    kind: str  # "volume", "image", "signal", "slide": what the figure shows

    @property
    def token_count(self) -> int:
        """How many tokens the encoder gives this input (the layout is checked against it)."""
        ...

    def to_input(self, scores: np.ndarray) -> np.ndarray:
        """(T,) token scores -> the map over the input (NaN where no token covers the input)."""
        ...

    def region(self, token: int) -> dict[str, Any]:
        """Where token ``token`` lies (slice / row / column, seconds, patch position), JSON-ready."""
        ...

    def render(self, scores: np.ndarray, title: str, path: Path) -> None:
        """Write the overlay of ``scores`` (T,) on the input as a PNG at ``path``."""
        ...


def color_limits(values: np.ndarray) -> tuple[float, float]:
    """The colour range of a map: its finite min and max (a flat map gets a small range around its value)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low < 1e-6:
        return low - 1e-3, high + 1e-3
    return low, high


def new_figure(width: float, height: float) -> Any:
    """A matplotlib figure on the Agg canvas (no pyplot: no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def add_colorbar(figure: Any, axes: Any, low: float, high: float) -> None:
    """The heat scale in full colour (a colour bar drawn from the translucent overlay would look washed out)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    scale = ScalarMappable(norm=Normalize(low, high), cmap=HEAT_COLORMAP)
    figure.colorbar(scale, ax=axes, fraction=0.046 if not isinstance(axes, list) else 0.02,
                    label="token similarity (cosine)")  # fmt: skip


def save_figure(figure: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")


HEAT_COLORMAP = "inferno"  # perceptually uniform and readable in grey print
HEAT_ALPHA = 0.45  # the anatomy stays visible under the map
