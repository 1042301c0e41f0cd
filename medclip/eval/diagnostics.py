"""Embedding-health diagnostics: is the shared space healthy, or collapsed, split by modality, or sorted by hospital?

Retrieval and AUROC say how well a space works on one task; these numbers say *why* it may not, and they need no
labels, so validation can log them during pretraining:

- **modality gap** (Liang et al., NeurIPS 2022, "Mind the Gap"): the distance between the centroids of two
  modalities' unit embeddings, and the gap vector itself. Contrastive training leaves every modality in its own cone,
  so some gap is normal; a gap that grows while alignment stalls, or that dominates the within-modality spread,
  hurts mixed-modality search and any score compared across modalities.
- **alignment** and **uniformity** (Wang & Isola, ICML 2020): the mean squared distance between the two embeddings of
  a pair (0 = identical, 4 = opposite), and log E[exp(-t ||x - y||^2)] over distinct pairs of one modality (0 = every
  row on one point, i.e. collapse; more negative = more evenly spread on the sphere).
- **effective rank** (Roy & Vetterli, EUSIPCO 2007; used for embeddings as RankMe, Garrido et al., ICML 2023):
  exp of the entropy of the normalised singular values. 1 = a single direction; the dimension D = every direction
  used equally. Dimensional collapse shows here before it shows in retrieval.
- **site separation**: how much of the embedding is explained by the site (hospital, scanner). Between-site vs
  within-site distance, the fraction of the variance between site centroids, and a cross-validated nearest-centroid
  probe predicting the site from the embedding. A probe far above chance means the site is written into the
  embedding: a shortcut (a model that recognises the scanner, not the disease) and a leakage signal.

Every function takes (N, D) numpy arrays or torch tensors, L2-normalises the rows (the space losses and retrieval
use) and an optional (N,) presence mask (a study may miss a modality). Everything is computed in float64.
Uniformity compares every pair of rows, so ``embedding_health`` subsamples above ``max_rows`` with a seeded generator
and says so in its output; the other numbers use every row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.special import logsumexp

# Uniformity and effective rank cost O(n^2 D) and O(n D^2): 4096 rows are about 8 M pairs, about a second on one CPU
# core for D = 512, cheap enough to run at every validation.
DEFAULT_MAX_ROWS = 4096
UNIFORMITY_T = 2.0  # Wang & Isola's t
PAIR_CHUNK_ROWS = 1024  # uniformity's pairwise block: 1024 x N float64, 32 MiB at N = 4096
SITE_PROBE_FOLDS = 5
MIN_NORM = 1e-12  # a row shorter than this has no direction: an error, not a silent zero vector


def _as_array(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} hold NaN or infinite values")
    return array


def _mask(mask: Any, n_rows: int, name: str) -> np.ndarray:
    if mask is None:
        return np.ones(n_rows, dtype=bool)
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.shape != (n_rows,):
        raise ValueError(f"mask of {name} has shape {mask.shape}, expected ({n_rows},)")
    if mask.dtype != bool:
        raise ValueError(f"mask of {name} must be boolean, got dtype {mask.dtype}")
    return mask


def unit_rows(values: Any, mask: Any = None, name: str = "embeddings") -> np.ndarray:
    """The present rows of ``values`` as float64 unit vectors: (N, D) [+ (N,) bool mask] -> (P, D).

    Raises:
        ValueError: non-2-D or non-finite input, a mask of the wrong shape or dtype, or a present row of zero length.
    """
    array = _as_array(values, name)
    rows = array[_mask(mask, len(array), name)]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)  # (P, 1)
    if np.any(norms < MIN_NORM):
        raise ValueError(f"{name}: {int(np.sum(norms < MIN_NORM))} present rows have zero length (no direction)")
    return rows / norms


def subsample_rows(n_rows: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_rows`` of ``n_rows`` rows, drawn without replacement by a seeded generator.

    Every row when ``max_rows`` is None or not exceeded, so small sets give exact numbers.
    """
    if max_rows is None or n_rows <= max_rows:
        return np.arange(n_rows)
    if max_rows < 2:
        raise ValueError(f"max_rows must be >= 2, got {max_rows}")
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False))


class ModalityGap(NamedTuple):
    """The gap between two modalities: ``distance`` = ||vector||, ``vector`` = centroid(a) - centroid(b), (D,)."""

    distance: float
    vector: np.ndarray


def modality_gap(a: Any, b: Any, mask_a: Any = None, mask_b: Any = None) -> ModalityGap:
    """Distance between the centroids of two modalities' unit embeddings (Liang et al. 2022).

    The two sets need not be paired or of equal size (a scan gallery and a set of reports); ``embedding_health``
    passes the rows where both modalities are present, so the gap is not confounded by different patients.

    Args:
        a: (N, D) embeddings of one modality; b: (M, D) of the other.
        mask_a: (N,) bool presence of ``a``'s rows; mask_b: (M,) of ``b``'s.

    Returns:
        ``ModalityGap(distance, vector)``; distance in [0, 2].
    """
    rows_a, rows_b = unit_rows(a, mask_a, "a"), unit_rows(b, mask_b, "b")
    if len(rows_a) == 0 or len(rows_b) == 0:
        raise ValueError(f"modality gap needs present rows on both sides, got {len(rows_a)} and {len(rows_b)}")
    if rows_a.shape[1] != rows_b.shape[1]:
        raise ValueError(f"a has width {rows_a.shape[1]} but b has {rows_b.shape[1]}")
    vector = rows_a.mean(axis=0) - rows_b.mean(axis=0)  # (D,)
    return ModalityGap(float(np.linalg.norm(vector)), vector)


def alignment(a: Any, b: Any, mask: Any = None, alpha: float = 2.0) -> float:
    """Wang & Isola's alignment: mean over pairs of ||a_i - b_i||^alpha (lower = positives closer).

    Args:
        a: (N, D) embeddings; b: (N, D), row i paired with row i of ``a``.
        mask: (N,) bool, rows where both are present.
        alpha: the exponent (Wang & Isola: 2, where it equals 2 - 2 * mean cosine for unit vectors).

    Returns:
        Alignment in [0, 2^alpha].
    """
    array_a, array_b = _as_array(a, "a"), _as_array(b, "b")
    if array_a.shape != array_b.shape:
        raise ValueError(f"paired embeddings must have one shape, got {array_a.shape} and {array_b.shape}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    mask = _mask(mask, len(array_a), "the pair")
    rows_a, rows_b = unit_rows(array_a, mask, "a"), unit_rows(array_b, mask, "b")
    if len(rows_a) == 0:
        raise ValueError("alignment needs at least one row where both modalities are present")
    return float(np.mean(np.linalg.norm(rows_a - rows_b, axis=1) ** alpha))


def uniformity(values: Any, mask: Any = None, t: float = UNIFORMITY_T) -> float:
    """Wang & Isola's uniformity: log of the mean Gaussian potential exp(-t ||x_i - x_j||^2) over pairs i != j.

    Computed in blocks of rows with a log-sum-exp, so memory is O(block * N) and a large t cannot underflow to
    log(0). Every pair is compared: subsample large sets first (``subsample_rows``, as ``embedding_health`` does).

    Args:
        values: (N, D) embeddings, N >= 2 present rows.
        mask: (N,) bool presence.
        t: the potential's scale (Wang & Isola: 2).

    Returns:
        Uniformity in [-4t, 0]: 0 when every row is the same point (collapse), lower = more uniform.
    """
    if t <= 0:
        raise ValueError(f"t must be > 0, got {t}")
    rows = unit_rows(values, mask)
    n_rows = len(rows)
    if n_rows < 2:
        raise ValueError(f"uniformity needs at least two present rows, got {n_rows}")
    squared_norms = np.einsum("nd,nd->n", rows, rows)  # (N,)
    block_logsumexp = []
    for start in range(0, n_rows, PAIR_CHUNK_ROWS):
        stop = min(start + PAIR_CHUNK_ROWS, n_rows)
        distances = squared_norms[start:stop, None] + squared_norms[None, :] - 2 * rows[start:stop] @ rows.T  # (C, N)
        potentials = -t * np.maximum(distances, 0.0)
        potentials[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # a row is not its own pair
        block_logsumexp.append(logsumexp(potentials))
    return float(logsumexp(block_logsumexp) - math.log(n_rows * (n_rows - 1)))


def effective_rank(values: Any, mask: Any = None) -> float:
    """Roy & Vetterli's effective rank: exp(entropy of the singular values normalised to sum to 1).

    The matrix is not centred (as in RankMe), so a modality that collapsed to one point has effective rank 1. The
    singular values come from the Gram matrix of the smaller side (a quarter of an SVD's cost); squared singular
    values below ``s_max^2 * max(N, D) * eps`` are rounding noise of that product and count as 0.

    Args:
        values: (N, D) embeddings; mask: (N,) bool presence.

    Returns:
        Effective rank in [1, min(N, D)].
    """
    rows = unit_rows(values, mask)
    if len(rows) == 0:
        raise ValueError("effective rank needs at least one present row")
    gram = rows.T @ rows if rows.shape[0] >= rows.shape[1] else rows @ rows.T  # the smaller side: (D, D) or (N, N)
    eigenvalues = np.linalg.eigvalsh(gram)  # the squared singular values of rows
    eigenvalues = eigenvalues[eigenvalues > eigenvalues.max() * max(rows.shape) * np.finfo(np.float64).eps]
    singular = np.sqrt(eigenvalues)
    share = singular / singular.sum()
    return float(np.exp(-np.sum(share * np.log(share))))


def _probe_folds(sites: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> tuple[list, str] | str:
    """Folds stratified by site, and grouped by patient when patients are known; the reason when too few allow none.

    Grouped folds are dealt here rather than by scikit-learn's StratifiedGroupKFold, whose search is quadratic in
    the number of patients: each patient goes with its most frequent site (a patient seen at several sites keeps all
    its rows together, so stratification is then approximate), each site's patients are shuffled by a seeded
    generator and dealt round-robin over the folds, and a patient's rows all land in its fold.
    """
    from sklearn.model_selection import StratifiedKFold

    site_names, site_index = np.unique(sites, return_inverse=True)
    if groups is None:
        n_folds = min(folds, int(np.bincount(site_index).min()))
        if n_folds < 2:
            return "a site has fewer than 2 rows"
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(sites)), sites)), f"{n_folds}-fold stratified by site"
    _, patient_index = np.unique(groups, return_inverse=True)
    rows_per_patient_and_site = np.zeros((patient_index.max() + 1, len(site_names)), dtype=np.int64)  # (P, S)
    np.add.at(rows_per_patient_and_site, (patient_index, site_index), 1)
    patient_site = rows_per_patient_and_site.argmax(axis=1)  # (P,)
    members = [np.flatnonzero(patient_site == site) for site in range(len(site_names))]
    n_folds = min(folds, int((rows_per_patient_and_site > 0).sum(axis=0).min()))  # patients seen at each site
    if n_folds < 2:
        return "a site has fewer than 2 patients"
    generator = np.random.default_rng(seed)
    patient_fold = np.empty(len(patient_site), dtype=np.int64)
    dealt = 0
    for patients in members:  # continue the round-robin across sites, so the folds stay equal in size
        patient_fold[generator.permutation(patients)] = (dealt + np.arange(len(patients))) % n_folds
        dealt += len(patients)
    row_fold = patient_fold[patient_index]  # (N,)
    splits = [(np.flatnonzero(row_fold != fold), np.flatnonzero(row_fold == fold)) for fold in range(n_folds)]
    return splits, f"{n_folds}-fold by patient, stratified by site"


def nearest_centroid_predictions(rows: np.ndarray, sites: np.ndarray, splits: Sequence[tuple]) -> np.ndarray:
    """Out-of-fold predictions of a nearest-centroid (Euclidean) classifier: each row is scored by a model that
    never saw it. A site missing from a fold's training rows cannot be predicted in that fold (it counts as a miss).

    A fold's training centroids are the per-site sums over all rows minus those over the fold's held-out rows, so
    each fold costs O(held-out rows), not a copy of the training rows.
    """
    names, site_index = np.unique(sites, return_inverse=True)
    one_hot = (site_index[None, :] == np.arange(len(names))[:, None]).astype(np.float64)  # (S, N)
    sums = one_hot @ rows  # (S, D)
    counts = np.bincount(site_index, minlength=len(names))  # (S,)
    predicted = np.empty(len(rows), dtype=sites.dtype)
    for _, held_out in splits:
        held_out_sums = one_hot[:, held_out] @ rows[held_out]  # (S, D)
        train_counts = counts - np.bincount(site_index[held_out], minlength=len(names))
        seen = train_counts > 0
        centroids = (sums - held_out_sums)[seen] / train_counts[seen, None]  # (S', D)
        distances = np.sum(centroids**2, axis=1)[None, :] - 2 * rows[held_out] @ centroids.T  # (T, S'), + ||x||^2
        predicted[held_out] = names[seen][np.argmin(distances, axis=1)]
    return predicted


def site_separation(
    values: Any,
    sites: Sequence[str | None],
    mask: Any = None,
    patients: Sequence[str] | None = None,
    folds: int = SITE_PROBE_FOLDS,
    seed: int = 0,
) -> dict[str, Any]:
    """How strongly the site (hospital, scanner) is written into one modality's embeddings.

    Rows without a site (None or "") are left out and counted.

    Args:
        values: (N, D) embeddings; mask: (N,) bool presence.
        sites: (N,) site of each row.
        patients: (N,) patient pseudonyms; the probe's folds then keep each patient's rows together (otherwise a
            patient's other studies in the training folds would make the site look easier to predict than it is).
        folds: the most cross-validation folds of the site probe.
        seed: of the folds.

    Returns:
        ``{"n_rows", "rows_without_site", "rows_per_site", "between_site_distance"`` (mean distance between site
        centroids), ``"within_site_distance"`` (mean distance of a row to its site's centroid), ``"separation_ratio"``
        (between / within), ``"site_variance_fraction"`` (share of the total variance that lies between site centroids,
        in [0, 1]), ``"site_probe": {"balanced_accuracy", "accuracy", "chance_balanced_accuracy", "majority_fraction",
        "folds"}`` or ``{"skipped": reason}``; with fewer than two sites only the counts and ``"skipped"``.
    """
    array = _as_array(values, "embeddings")
    present = _mask(mask, len(array), "embeddings")
    site_text = np.array(["" if site is None else str(site) for site in sites], dtype=object)
    if len(site_text) != len(array):
        raise ValueError(f"sites has {len(site_text)} rows but the embeddings have {len(array)}")
    if patients is not None and len(patients) != len(array):
        raise ValueError(f"patients has {len(patients)} rows but the embeddings have {len(array)}")
    with_site = present & (site_text != "")
    rows = unit_rows(array, with_site)
    row_sites = site_text[with_site].astype(str)
    groups = np.asarray(patients, dtype=object)[with_site].astype(str) if patients is not None else None
    names, counts = np.unique(row_sites, return_counts=True)
    result: dict[str, Any] = {
        "n_rows": int(len(rows)),
        "rows_without_site": int(np.sum(present & (site_text == ""))),
        "rows_per_site": {str(name): int(count) for name, count in zip(names, counts, strict=True)},
    }
    if len(names) < 2:
        result["skipped"] = "fewer than two sites"
        return result
    centroids = np.stack([rows[row_sites == name].mean(axis=0) for name in names])  # (S, D)
    site_index = np.searchsorted(names, row_sites)  # (N,) index into names (sorted)
    within = np.linalg.norm(rows - centroids[site_index], axis=1)  # (N,)
    between = [np.linalg.norm(centroids[i] - centroids[j]) for i, j in itertools.combinations(range(len(names)), 2)]
    grand = rows.mean(axis=0)  # (D,)
    total_sum_of_squares = np.sum((rows - grand) ** 2)
    between_sum_of_squares = np.sum(counts * np.sum((centroids - grand) ** 2, axis=1))
    result.update(
        {
            "between_site_distance": float(np.mean(between)),
            "within_site_distance": float(np.mean(within)),
            "separation_ratio": _ratio(float(np.mean(between)), float(np.mean(within))),
            "site_variance_fraction": _ratio(float(between_sum_of_squares), float(total_sum_of_squares)),
        }
    )
    folds_or_reason = _probe_folds(row_sites, groups, folds, seed)
    if isinstance(folds_or_reason, str):
        result["site_probe"] = {"skipped": folds_or_reason}
        return result
    splits, description = folds_or_reason
    predicted = nearest_centroid_predictions(rows, row_sites, splits)
    recalls = [np.mean(predicted[row_sites == name] == name) for name in names]
    result["site_probe"] = {
        "balanced_accuracy": float(np.mean(recalls)),
        "accuracy": float(np.mean(predicted == row_sites)),
        "chance_balanced_accuracy": 1.0 / len(names),
        "majority_fraction": float(counts.max() / counts.sum()),
        "folds": description,
    }
    return result


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def embedding_health(
    embeddings: Mapping[str, Any],
    masks: Mapping[str, Any] | None = None,
    sites: Sequence[str | None] | None = None,
    patients: Sequence[str] | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    seed: int = 0,
    t: float = UNIFORMITY_T,
) -> dict[str, Any]:
    """Every diagnostic of this module for a set of studies, as a JSON-able dict (for metrics.json and logs).

    Args:
        embeddings: modality name -> (N, D) embeddings of the same N studies (row i of every modality is study i).
        masks: modality name -> (N,) bool presence (all present when missing).
        sites: (N,) site of each study, for the site separation of each modality (None: not computed).
        patients: (N,) patient pseudonyms, to group the site probe's folds by patient.
        max_rows: uniformity and effective rank use at most this many present rows per modality, drawn by a
            generator seeded with ``seed`` (None = every row); the output says how many rows each used.
        seed: of the subsample and of the site probe's folds.
        t: uniformity's scale.

    Returns:
        ``{"n_rows", "max_rows", "seed", "modalities": {name: {"n_present", "dimension", "centroid_norm",
        "uniformity", "effective_rank", "rows_used", "subsampled"}}, "pairs": {"a-b": {"n_paired", "gap",
        "alignment", "mean_paired_cosine"}}, "sites": {name: site_separation(...)}}``. A number that needs more rows
        than there are is None.
    """
    names = list(embeddings)
    if not names:
        raise ValueError("embedding_health needs at least one modality")
    masks = masks or {}
    arrays = {name: _as_array(embeddings[name], name) for name in names}
    n_rows = len(arrays[names[0]])
    for name, array in arrays.items():
        if len(array) != n_rows:
            raise ValueError(f"{name} has {len(array)} rows but {names[0]} has {n_rows}: rows must be the same studies")
    present = {name: _mask(masks.get(name), n_rows, name) for name in names}
    report: dict[str, Any] = {"n_rows": n_rows, "max_rows": max_rows, "seed": seed, "modalities": {}, "pairs": {}}
    for name in names:
        rows = unit_rows(arrays[name], present[name], name)
        chosen = rows[subsample_rows(len(rows), max_rows, seed)]
        report["modalities"][name] = {
            "n_present": int(len(rows)),
            "dimension": int(rows.shape[1]),
            "centroid_norm": float(np.linalg.norm(rows.mean(axis=0))) if len(rows) else None,
            "uniformity": uniformity(chosen, t=t) if len(chosen) >= 2 else None,
            "effective_rank": effective_rank(chosen) if len(chosen) else None,
            "rows_used": int(len(chosen)),
            "subsampled": bool(len(chosen) < len(rows)),
        }
    for a, b in itertools.combinations(names, 2):
        both = present[a] & present[b]
        entry: dict[str, Any] = {
            "n_paired": int(both.sum()),
            "gap": None,
            "alignment": None,
            "mean_paired_cosine": None,
        }
        if both.any():  # widths differ only in a broken model: modality_gap raises
            entry["gap"] = modality_gap(arrays[a], arrays[b], both, both).distance
            entry["alignment"] = alignment(arrays[a], arrays[b], both)
            entry["mean_paired_cosine"] = 1.0 - entry["alignment"] / 2.0  # ||x - y||^2 = 2 - 2 cos for unit vectors
        report["pairs"][f"{a}-{b}"] = entry
    if sites is not None:
        report["sites"] = {
            name: site_separation(arrays[name], sites, present[name], patients, seed=seed) for name in names
        }
    return report


def health_scalars(health: Mapping[str, Any], prefix: str = "health") -> dict[str, float]:
    """The numbers of an ``embedding_health`` report as flat ``{"health/ct/uniformity": value}`` scalars.

    For training loggers (TensorBoard, the JSON log), which take one float per key. Counts, undefined values (None)
    and settings are left out; so are the per-site row counts, which are data description rather than health.
    """
    scalars: dict[str, float] = {}

    def visit(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key not in ("rows_per_site", "max_rows", "seed"):
                    visit(value, f"{path}/{key}")
        elif isinstance(node, float) and math.isfinite(node):
            scalars[path] = node

    visit(health, prefix)
    return scalars
