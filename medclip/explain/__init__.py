"""Grounding maps (``medclip explain``): phrase -> region heatmaps from a token-level model's token similarities.

See docs/explain.md for what the maps mean and do not mean. ``grounding.py`` computes the scores; the layouts
(``grid.py``, ``signal.py``, ``patches.py``) map them back onto the input and draw them; each modality plugin says
which layout its tokens follow (``Modality.token_layout``).
"""

from .grid import GridLayout, infer_grid
from .grounding import PHRASE_EMBEDDING, ExplainError, Grounding, check_explainable, embed_phrases, ground
from .layout import TokenLayout
from .patches import PatchLayout
from .signal import SignalLayout

__all__ = [
    "PHRASE_EMBEDDING",
    "ExplainError",
    "GridLayout",
    "Grounding",
    "PatchLayout",
    "SignalLayout",
    "TokenLayout",
    "check_explainable",
    "embed_phrases",
    "ground",
    "infer_grid",
]
