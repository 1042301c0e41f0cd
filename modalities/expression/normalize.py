"""Expression normalisations: what the values in a file are, and how each kind becomes model input.

Files arrive in one of three states, and mixing them would put cells on different scales:

- ``counts``: raw UMI / read counts (non-negative integers). Library-size normalised to ``target_sum`` and then
  ``log1p``-transformed, exactly as ``scanpy.pp.normalize_total`` + ``scanpy.pp.log1p`` do, so sequencing depth does
  not dominate the embedding.
- ``log1p``: already log-normalised (non-negative, non-integer): used as is.
- ``scaled``: z-scored per gene (has negative values): used as is, but it lives in a different value space than the
  other two, so a model trained on one space refuses the other (see ``ExpressionModality.check_compatible``).

``detect_kind`` tells them apart from a sample of a file's values; ``EXPRESSION_NORMALIZATIONS`` maps each kind to its
transform.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medclip.registry import Registry
from medclip.types import ModalityError

# The value spaces a model can be trained in; counts and log1p both end up log-normalised.
LOG_SPACE = "log1p"
SCALED_SPACE = "scaled"


@dataclass(frozen=True)
class Normalization:
    """One kind of input values and how to bring a cell of that kind into the model's value space.

    Attributes:
        name: the kind ("counts", "log1p", "scaled").
        space: the value space of the output (``LOG_SPACE`` or ``SCALED_SPACE``).
        non_negative: whether input values of this kind are never negative (used to refuse a wrong explicit choice).
        apply: (G,) float64 values of one cell and the target sum -> (G,) normalised values.
    """

    name: str
    space: str
    non_negative: bool
    apply: Callable[[np.ndarray, float], np.ndarray]


def library_size_log1p(values: np.ndarray, target_sum: float) -> np.ndarray:
    """Scale a cell's counts to ``target_sum`` in total, then log1p (scanpy's normalize_total + log1p)."""
    total = values.sum()
    if not np.isfinite(total):  # counts summing past float64: scaling by target / inf would give zeros, not an error
        return np.full_like(values, np.nan)
    return np.log1p(values * (target_sum / total))


def unchanged(values: np.ndarray, target_sum: float) -> np.ndarray:
    """Values that are already normalised are used as they are."""
    return values


EXPRESSION_NORMALIZATIONS: Registry[Normalization] = Registry("expression normalization")
EXPRESSION_NORMALIZATIONS.register(
    "counts", Normalization("counts", LOG_SPACE, non_negative=True, apply=library_size_log1p)
)
EXPRESSION_NORMALIZATIONS.register("log1p", Normalization("log1p", LOG_SPACE, non_negative=True, apply=unchanged))
EXPRESSION_NORMALIZATIONS.register("scaled", Normalization("scaled", SCALED_SPACE, non_negative=False, apply=unchanged))

AUTO = "auto"
# The largest plausible log-space value: log1p of ~1e13. Counts normalised to any target sum stay far below it (9.2 for
# scanpy's 1e4), and log-normalised files below ~15; larger values are unlogged normalised data (CPM, TPM) that the
# detection took for log1p because they are not integers.
LOG_SPACE_MAX = 30.0


def check_normalised(values: np.ndarray, normalization: Normalization) -> None:
    """A cell's values after normalisation must be finite and, in log space, no larger than ``LOG_SPACE_MAX``.

    Raises:
        ModalityError: ``non_finite`` (a library size that overflows) or ``implausible_values``.
    """
    if not np.isfinite(values).all():
        raise ModalityError("non_finite", "the observation's values are not finite once normalised (an overflow)")
    if normalization.space == LOG_SPACE and values.max(initial=0.0) > LOG_SPACE_MAX:
        raise ModalityError(
            "implausible_values",
            f"the observation has values above {LOG_SPACE_MAX:g} in log space: the layer does not hold log-normalised "
            "data (unlogged CPM/TPM?); choose a counts layer or set normalization",
        )


def detect_kind(values: np.ndarray) -> str:
    """Tell counts, log-normalised and scaled values apart from a sample of a file's (finite) values.

    Negative values only occur after z-scoring; non-negative integers are counts; anything else non-negative is
    taken as log-normalised. An all-zero sample reads as counts, which normalises to zeros either way.
    """
    values = values[np.isfinite(values)]
    if values.size and values.min() < 0:
        return "scaled"
    if np.array_equal(values, np.round(values)):
        return "counts"
    return "log1p"
