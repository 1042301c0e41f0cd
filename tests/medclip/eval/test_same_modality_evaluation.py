"""Same-modality retrieval of the retrieve recipe: rows chosen, relevance built, patients de-duplicated, CIs."""

from __future__ import annotations

import numpy as np
import pytest

from medclip.embedding import EmbeddedRows
from medclip.eval.embedding_diagnostics import merge_rows
from medclip.eval.ranking import finding_relevance
from medclip.eval.retrieval import same_modality_retrieval
from medclip.eval.same_modality_evaluation import same_modality_statistics


def rows_of(n_patients: int = 30, studies_per_patient: int = 2, seed: int = 0) -> EmbeddedRows:
    """Studies of a few patients; a patient's studies are near-duplicates, findings shape the rest of the space."""
    generator = np.random.default_rng(seed)
    n_rows = n_patients * studies_per_patient
    patients = np.repeat([f"p-{i:03d}" for i in range(n_patients)], studies_per_patient)
    finding = np.repeat(generator.integers(0, 3, n_patients), studies_per_patient)  # (N,) one of three findings
    labels = np.eye(3, dtype=np.float32)[finding]  # (N, 3)
    centres = generator.normal(size=(3, 8))
    patient_offset = np.repeat(generator.normal(size=(n_patients, 8)), studies_per_patient, axis=0)
    vectors = centres[finding] + 0.8 * patient_offset + 0.3 * generator.normal(size=(n_rows, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    present = np.ones(n_rows, bool)
    present[-3:] = False  # three rows without the modality are left out
    labels[0, 1] = np.nan  # one row with an unknown label is left out and counted
    return EmbeddedRows(
        np.arange(1, n_rows + 1),
        patients,
        np.array([f"s-{i:03d}" for i in range(n_rows)]),
        [None] * n_rows,
        labels,
        np.zeros((n_rows, 0), np.float32),
        {"ct": np.where(present[:, None], vectors, 0.0).astype(np.float32)},
        {"ct": present},
    )


def test_matches_the_library_on_the_chosen_rows_with_patient_exclusion():
    rows = rows_of()
    result = same_modality_statistics(rows, "ct", [1, 5], n_boot=200, seed=0)
    chosen = rows.subset(rows.present["ct"] & ~np.isnan(rows.labels).any(axis=1))
    assert result["n_rows"] == len(chosen) == len(rows) - 4 and result["rows_with_unknown_labels"] == 1
    relevant = finding_relevance(chosen.labels, chosen.labels)[0]
    expected = same_modality_retrieval(chosen.embeddings["ct"], chosen.patients, relevant, ks=(1, 5))
    for name in ("R@1", "R@5", "mAP", "median_rank"):
        assert result[name]["value"] == pytest.approx(expected[name])
        assert result[name]["ci_low"] <= result[name]["value"] <= result[name]["ci_high"]
    assert result["n_scored"] == expected["n_scored"] and result["same_patient"] == "exclude"
    # counting a patient's near-duplicate study as a match inflates the numbers: exclusion is what keeps them honest
    counted = same_modality_statistics(rows, "ct", [1], same_patient="positive", n_boot=20)
    assert counted["R@1"]["value"] > result["R@1"]["value"]


def test_needs_labels_unless_same_patient_studies_are_the_matches():
    rows = rows_of()
    rows.labels = np.zeros((len(rows), 0), np.float32)
    with pytest.raises(ValueError, match="label:<finding>"):
        same_modality_statistics(rows, "ct", [1])
    result = same_modality_statistics(rows, "ct", [1], same_patient="positive", n_boot=20)
    assert result["relevance"] == "the patient's other studies" and result["R@1"]["value"] > 0.5


def test_merge_rows_joins_two_embeddings_by_manifest_row():
    rows = rows_of(n_patients=4)  # 8 rows, the last 3 without ct
    reports = rows.subset(np.arange(2, 8))  # another modality embedded on rows 3..8
    reports.embeddings, reports.present = {"report": np.ones((6, 4), np.float32)}, {"report": np.ones(6, bool)}
    merged = merge_rows(rows.subset(np.arange(0, 6)), reports, ["ct", "report"])
    assert list(merged.row_numbers) == list(range(1, 9))
    assert list(merged.present["ct"]) == [True] * 5 + [False] * 3
    assert list(merged.present["report"]) == [False] * 2 + [True] * 6
    assert list(merged.patients) == list(rows.patients)
    np.testing.assert_array_equal(merged.embeddings["ct"][:5], rows.embeddings["ct"][:5])
