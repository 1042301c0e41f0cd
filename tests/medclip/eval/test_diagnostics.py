"""Embedding-health diagnostics against independent references: Wang & Isola's published one-line formulas, SVD
entropy written with scipy, scikit-learn's NearestCentroid, the ANOVA sum-of-squares identity, and closed forms
(collapse, orthonormal directions, equally spaced points on a circle)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import i0
from scipy.stats import entropy
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import NearestCentroid

from medclip.eval import diagnostics
from medclip.eval.diagnostics import (
    alignment,
    effective_rank,
    embedding_health,
    modality_gap,
    site_separation,
    subsample_rows,
    uniformity,
)


def unit(array: np.ndarray) -> np.ndarray:
    return array / np.linalg.norm(array, axis=1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def wang_isola_uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """The reference implementation from Wang & Isola's paper (Fig. 5), on unit rows."""
    return float(torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log())


def wang_isola_alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    return float((x - y).norm(p=2, dim=1).pow(alpha).mean())


# --- modality gap --------------------------------------------------------------------------------------------------
def test_gap_of_two_point_masses_is_the_distance_between_them():
    a = np.tile([1.0, 0.0, 0.0], (5, 1))
    b = np.tile([0.0, 3.0, 0.0], (4, 1))  # not unit length: rows are normalised first
    gap = modality_gap(a, b)
    assert gap.distance == pytest.approx(math.sqrt(2))
    np.testing.assert_allclose(gap.vector, [1.0, -1.0, 0.0])


def test_gap_matches_a_direct_loop_and_honours_masks(rng):
    a, b = rng.normal(size=(12, 5)), rng.normal(size=(9, 5))
    mask_a = np.array([True, False] * 6)
    mask_b = np.arange(9) % 3 != 0
    a_shifted = a.copy()
    a_shifted[~mask_a] = 100.0  # absent rows hold garbage; it must not count
    centroid_a = (
        sum(row / math.sqrt(sum(v * v for v in row)) for row, keep in zip(a, mask_a, strict=True) if keep)
        / mask_a.sum()
    )
    centroid_b = (
        sum(row / math.sqrt(sum(v * v for v in row)) for row, keep in zip(b, mask_b, strict=True) if keep)
        / mask_b.sum()
    )
    gap = modality_gap(a_shifted, torch.from_numpy(b), mask_a, torch.from_numpy(mask_b))
    np.testing.assert_allclose(gap.vector, centroid_a - centroid_b, rtol=1e-12)
    assert gap.distance == pytest.approx(math.dist(centroid_a, centroid_b), rel=1e-12)


# --- alignment and uniformity ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [2.0, 1.0])
def test_alignment_matches_wang_isola(rng, alpha):
    x, y = unit(rng.normal(size=(20, 6))), unit(rng.normal(size=(20, 6)))
    expected = wang_isola_alignment(torch.from_numpy(x), torch.from_numpy(y), alpha)
    assert alignment(x, y, alpha=alpha) == pytest.approx(expected, rel=1e-12)
    assert alignment(x, x) == 0.0 and alignment(x, -x) == pytest.approx(4.0)
    mask = np.arange(20) < 7
    assert alignment(x, y, mask) == pytest.approx(wang_isola_alignment(*map(torch.from_numpy, (x[:7], y[:7]))))


@pytest.mark.parametrize("t", [2.0, 0.5])
def test_uniformity_matches_wang_isola(rng, t, monkeypatch):
    x = unit(rng.normal(size=(37, 8)))
    expected = wang_isola_uniformity(torch.from_numpy(x), t)
    assert uniformity(x, t=t) == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(diagnostics, "PAIR_CHUNK_ROWS", 5)  # blocks of rows give the same number
    assert uniformity(x, t=t) == pytest.approx(expected, rel=1e-12)


def test_uniformity_closed_forms():
    collapsed = np.tile([0.6, 0.8], (10, 1))
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-12)
    # N equally spaced points on the unit circle: the mean of exp(-t (2 - 2 cos)) over all N angles (the row itself
    # included) equals exp(-2t) I0(2t) up to a term exponentially small in N; leaving the row out gives the form below.
    n, t = 360, 2.0
    angles = 2 * np.pi * np.arange(n) / n
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    expected = math.log((n * math.exp(-2 * t) * i0(2 * t) - 1) / (n - 1))
    assert uniformity(circle, t=t) == pytest.approx(expected, abs=1e-10)
    # two antipodal points are as far apart as the sphere allows: log exp(-4t)
    assert uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]]), t=t) == pytest.approx(-4 * t)


def test_uniformity_with_a_large_t_does_not_underflow(rng):
    x = unit(rng.normal(size=(6, 3)))
    t = 500.0
    squared = [float(np.sum((x[i] - x[j]) ** 2)) for i, j in itertools.permutations(range(6), 2)]
    smallest = min(squared)
    expected = -t * smallest + math.log(sum(math.exp(-t * (d - smallest)) for d in squared) / len(squared))
    assert math.isfinite(uniformity(x, t=t)) and uniformity(x, t=t) == pytest.approx(expected, rel=1e-9)


# --- effective rank ------------------------------------------------------------------------------------------------
def test_effective_rank_closed_forms(rng):
    assert effective_rank(np.tile(rng.normal(size=(1, 16)), (50, 1))) == pytest.approx(1.0, abs=1e-12)
    k = 5
    directions = np.eye(16)[:k]
    equal_use = np.repeat(directions, 4, axis=0)  # each of k orthonormal directions used by 4 rows
    assert effective_rank(equal_use) == pytest.approx(k, rel=1e-12)
    unequal_use = np.concatenate([np.repeat(directions[:1], 9, axis=0), directions[1:2]])  # singular values 3 and 1
    assert effective_rank(unequal_use) == pytest.approx(math.exp(entropy([0.75, 0.25])), rel=1e-12)


def test_effective_rank_matches_scipy_entropy_of_singular_values(rng):
    x = rng.normal(size=(40, 10)) * np.linspace(0.1, 3, 10)  # anisotropic
    rows = unit(x)
    singular = np.linalg.svd(rows, compute_uv=False)
    assert effective_rank(x) == pytest.approx(math.exp(entropy(singular / singular.sum())), rel=1e-10)
    mask = np.arange(40) % 2 == 0
    singular = np.linalg.svd(rows[mask], compute_uv=False)
    assert effective_rank(torch.from_numpy(x), torch.from_numpy(mask)) == pytest.approx(
        math.exp(entropy(singular)), rel=1e-10
    )


# --- site separation -----------------------------------------------------------------------------------------------
def site_data(rng, separation: float, n_patients: int = 30, studies: int = 3):
    """Patients at one of three sites, each with several studies; ``separation`` scales a per-site offset."""
    offsets = rng.normal(size=(3, 16))
    sites, patients, rows = [], [], []
    for patient in range(n_patients):
        site = patient % 3
        patient_offset = rng.normal(size=16)
        for _ in range(studies):
            rows.append(separation * offsets[site] + patient_offset + 0.3 * rng.normal(size=16))
            sites.append(f"hospital-{site}")
            patients.append(f"p-{patient}")
    return np.array(rows), sites, patients


def test_site_statistics_match_the_anova_identity_and_direct_distances(rng):
    x, sites, patients = site_data(rng, separation=0.5)
    result = site_separation(x, sites, patients=patients)
    rows, labels = unit(x), np.array(sites)
    names = sorted(set(sites))
    centroids = {name: rows[labels == name].mean(axis=0) for name in names}
    within_squares = sum(float(np.sum((row - centroids[label]) ** 2)) for row, label in zip(rows, labels, strict=True))
    total_squares = float(np.sum((rows - rows.mean(axis=0)) ** 2))
    assert result["site_variance_fraction"] == pytest.approx(1 - within_squares / total_squares, rel=1e-10)
    within = np.mean([math.dist(row, centroids[label]) for row, label in zip(rows, labels, strict=True)])
    between = np.mean([math.dist(centroids[p], centroids[q]) for p, q in itertools.combinations(names, 2)])
    assert result["within_site_distance"] == pytest.approx(within, rel=1e-10)
    assert result["between_site_distance"] == pytest.approx(between, rel=1e-10)
    assert result["separation_ratio"] == pytest.approx(between / within, rel=1e-10)
    assert result["rows_per_site"] == {name: 30 for name in names} and result["n_rows"] == 90


def test_site_probe_equals_sklearn_nearest_centroid_on_the_same_patient_folds(rng):
    x, sites, patients = site_data(rng, separation=0.4)
    result = site_separation(x, sites, patients=patients, seed=3)
    labels = np.array(sites)
    splits, description = diagnostics._probe_folds(labels, np.array(patients), 5, 3)
    for train, test in splits:  # grouped: a patient's studies are never on both sides
        assert not set(np.array(patients)[train]) & set(np.array(patients)[test])
    predicted = cross_val_predict(NearestCentroid(), unit(x), labels, cv=splits)
    recalls = [np.mean(predicted[labels == name] == name) for name in sorted(set(sites))]
    probe = result["site_probe"]
    assert probe["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert probe["accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert probe["folds"] == description == "5-fold by patient, stratified by site"
    assert probe["chance_balanced_accuracy"] == pytest.approx(1 / 3)


def test_site_probe_is_at_chance_without_site_signal_and_perfect_with_a_strong_one(rng):
    x, sites, patients = site_data(rng, separation=0.0)
    no_signal = site_separation(x, sites, patients=patients)
    x, sites, _ = site_data(rng, separation=5.0)
    strong = site_separation(x, sites)
    assert no_signal["site_probe"]["balanced_accuracy"] < 0.55 and no_signal["site_variance_fraction"] < 0.1
    assert strong["site_probe"]["balanced_accuracy"] == 1.0 and strong["site_variance_fraction"] > 0.8
    assert strong["site_probe"]["folds"] == "5-fold stratified by site"


def test_patient_grouped_folds_stop_a_patient_from_revealing_its_site(rng):
    """No site offset at all, but every patient has a strong signature and many studies: row-level folds find the
    patient's other studies (and so its site) in the training rows; patient folds do not."""
    x, sites, patients = site_data(rng, separation=0.0, n_patients=12, studies=8)
    x = x + 3 * np.repeat(rng.normal(size=(12, 16)), 8, axis=0)
    by_row = site_separation(x, sites)["site_probe"]["balanced_accuracy"]
    by_patient = site_separation(x, sites, patients=patients)["site_probe"]["balanced_accuracy"]
    assert by_row > 0.6 > by_patient


def test_site_separation_counts_blank_sites_and_skips_what_it_cannot_compute(rng):
    x = rng.normal(size=(6, 4))
    result = site_separation(x, ["A", "A", None, "", "B", "B"], mask=np.array([1, 1, 1, 1, 1, 0], dtype=bool))
    assert result["rows_without_site"] == 2 and result["rows_per_site"] == {"A": 2, "B": 1}
    assert result["site_probe"] == {"skipped": "a site has fewer than 2 rows"}
    one_site = site_separation(x, ["A"] * 6)
    assert one_site["skipped"] == "fewer than two sites" and "site_probe" not in one_site


# --- embedding_health ----------------------------------------------------------------------------------------------
def test_subsample_is_seeded_sorted_and_only_above_the_limit():
    assert subsample_rows(10, 20, seed=0).tolist() == list(range(10))
    first, again, other = subsample_rows(1000, 50, 1), subsample_rows(1000, 50, 1), subsample_rows(1000, 50, 2)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert len(np.unique(first)) == 50 and np.all(np.diff(first) > 0)


def test_embedding_health_combines_the_diagnostics_and_is_json(rng):
    n = 40
    ct = torch.from_numpy(rng.normal(size=(n, 8)))
    report = F.normalize(ct + 0.5 * torch.from_numpy(rng.normal(size=(n, 8))), dim=-1)
    masks = {"ct": torch.arange(n) % 5 != 0, "report": torch.arange(n) % 7 != 0}
    sites = ["A" if i % 2 else "B" for i in range(n)]
    health = embedding_health({"ct": ct, "report": report}, masks, sites=sites, max_rows=20, seed=4)
    json.dumps(health)  # metrics.json-ready: no numpy scalars or arrays
    chosen = subsample_rows(int(masks["ct"].sum()), 20, 4)
    ct_rows = unit(ct.numpy()[masks["ct"].numpy()])[chosen]
    assert health["modalities"]["ct"] == {
        "n_present": 32,
        "dimension": 8,
        "centroid_norm": pytest.approx(np.linalg.norm(unit(ct.numpy()[masks["ct"].numpy()]).mean(axis=0))),
        "uniformity": pytest.approx(wang_isola_uniformity(torch.from_numpy(ct_rows))),
        "effective_rank": pytest.approx(effective_rank(ct_rows)),
        "rows_used": 20,
        "subsampled": True,
    }
    both = (masks["ct"] & masks["report"]).numpy()
    pair = health["pairs"]["ct-report"]
    assert pair["n_paired"] == int(both.sum())
    assert pair["gap"] == pytest.approx(modality_gap(ct.numpy()[both], report.numpy()[both]).distance)
    assert pair["alignment"] == pytest.approx(wang_isola_alignment(F.normalize(ct[both], dim=-1), report[both]))
    cosine = float((F.normalize(ct[both], dim=-1) * report[both]).sum(dim=1).mean())
    assert pair["mean_paired_cosine"] == pytest.approx(cosine)
    assert health["sites"]["report"]["n_rows"] == int(masks["report"].sum())
    exact = embedding_health({"ct": ct, "report": report}, masks, max_rows=None)
    assert exact["modalities"]["ct"]["subsampled"] is False and "sites" not in exact


def test_embedding_health_rejects_what_it_cannot_measure(rng):
    with pytest.raises(ValueError, match="rows must be the same studies"):
        embedding_health({"ct": rng.normal(size=(4, 3)), "report": rng.normal(size=(5, 3))})
    with pytest.raises(ValueError, match="NaN or infinite"):
        embedding_health({"ct": np.full((3, 2), np.nan)})
    with pytest.raises(ValueError, match="zero length"):
        uniformity(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="boolean"):
        alignment(np.ones((2, 2)), np.ones((2, 2)), mask=np.ones(2))
    lonely = embedding_health({"ct": np.eye(3)}, {"ct": np.array([True, False, False])})
    assert lonely["modalities"]["ct"]["uniformity"] is None and lonely["modalities"]["ct"]["effective_rank"] == 1.0


def test_patients_seen_at_several_sites_keep_their_rows_in_one_fold(rng):
    x = rng.normal(size=(60, 8))
    sites = [f"site-{i % 3}" for i in range(60)]
    patients = np.array([f"p-{i // 2}" for i in range(60)])  # each patient at two sites
    splits, description = diagnostics._probe_folds(np.array(sites), patients, 5, 0)
    assert description == "5-fold by patient, stratified by site"
    assert sorted(np.concatenate([held_out for _, held_out in splits]).tolist()) == list(range(60))
    for train, held_out in splits:
        assert not set(patients[train]) & set(patients[held_out])
    assert "balanced_accuracy" in site_separation(x, sites, patients=list(patients))["site_probe"]


def test_health_scalars_flatten_the_numbers_for_loggers(rng):
    health = embedding_health(
        {"ct": rng.normal(size=(20, 4)), "report": rng.normal(size=(20, 4))},
        sites=["A", "B"] * 10,
        max_rows=10,
    )
    scalars = diagnostics.health_scalars(health)
    assert scalars["health/modalities/ct/uniformity"] == health["modalities"]["ct"]["uniformity"]
    assert scalars["health/pairs/ct-report/gap"] == health["pairs"]["ct-report"]["gap"]
    assert (
        scalars["health/sites/report/site_probe/balanced_accuracy"]
        == (health["sites"]["report"]["site_probe"]["balanced_accuracy"])
    )
    assert all(isinstance(value, float) for value in scalars.values())
    assert not any(key.endswith(("n_present", "rows_used", "max_rows", "seed")) for key in scalars)
