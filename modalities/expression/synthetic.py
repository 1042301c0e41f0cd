"""Synthetic single-cell data shaped like the real thing, so tests and ``--data synthetic`` runs need no files.

Counts are negative binomial (the standard model of UMI counts: over-dispersed Poisson) around per-gene baselines
with a few cell-type programs, each raising its own marker genes; cell depth varies log-normally. The counts are then
normalised exactly as a counts file would be, so the samples look like what ``ExpressionModality.load`` returns.
"""

from __future__ import annotations

import numpy as np

from medclip.types import Sample

from .genes import register_gene_list
from .normalize import EXPRESSION_NORMALIZATIONS

SYNTHETIC_GENES = 200  # a small panel keeps tests fast
SYNTHETIC_PROGRAMS = 4  # cell types
MARKERS_PER_PROGRAM = 12
DISPERSION = 2.0  # negative binomial shape r; typical UMI data has r of 1-10
MEDIAN_DEPTH = 2000.0  # UMIs per cell


def synthetic_gene_names(count: int = SYNTHETIC_GENES) -> list[str]:
    """Gene names that cannot be confused with real ones."""
    return [f"SYNGENE{index:04d}" for index in range(count)]


def synthetic_counts(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, G) integer counts and (n,) program (cell type) ids, reproducible from ``seed``.

    The gene baselines and programs are drawn from a fixed generator, so every seed shares one biology and only the
    cells differ.
    """
    biology = np.random.default_rng(12345)
    baseline = biology.lognormal(mean=0.0, sigma=1.2, size=SYNTHETIC_GENES)  # (G,) relative expression
    programs = np.ones((SYNTHETIC_PROGRAMS, SYNTHETIC_GENES))  # (P, G) fold changes
    for program in range(SYNTHETIC_PROGRAMS):
        markers = biology.choice(SYNTHETIC_GENES, size=MARKERS_PER_PROGRAM, replace=False)
        programs[program, markers] = biology.uniform(4.0, 12.0, size=MARKERS_PER_PROGRAM)
    rng = np.random.default_rng(seed)
    cell_types = rng.integers(0, SYNTHETIC_PROGRAMS, size=n)  # (n,)
    profile = baseline * programs[cell_types]  # (n, G)
    profile /= profile.sum(axis=1, keepdims=True)
    depth = MEDIAN_DEPTH * rng.lognormal(mean=0.0, sigma=0.4, size=(n, 1))  # (n, 1)
    mean = profile * depth  # (n, G)
    counts = rng.negative_binomial(DISPERSION, DISPERSION / (DISPERSION + mean))  # (n, G)
    return counts.astype(np.float32), cell_types


def synthetic_samples(n: int, seed: int = 0, target_sum: float = 1e4) -> list[Sample]:
    """``n`` samples as ``load`` returns them: normalised (G,) float32 vectors with allow-listed metadata."""
    genes_key = register_gene_list(synthetic_gene_names())
    counts, _ = synthetic_counts(n, seed)
    normalization = EXPRESSION_NORMALIZATIONS.get("counts")
    samples = []
    for cell in counts:
        values = normalization.apply(cell.astype(np.float64), target_sum).astype(np.float32)
        meta = {
            "genes_key": genes_key,
            "normalization": normalization.name,
            "space": normalization.space,
            "n_genes": int(values.size),
        }
        samples.append({"expression": values, "expression_meta": meta})
    return samples
