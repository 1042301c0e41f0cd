"""Same-modality retrieval: hand-computed ranks and AP on points of a circle, and agreement with the cross-modal
``retrieval_ranks`` / ``mean_average_precision`` run query by query on the gallery the policy leaves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medclip.eval import finding_relevance, mean_average_precision, retrieval_ranks
from medclip.eval.retrieval import same_modality_per_query, same_modality_retrieval


def circle_studies():
    """Five studies at 0, 10, 30, 90 and 180 degrees (the last two exactly, so their scores against study 0 tie)."""
    points = [
        [1.0, 0.0],
        [math.cos(math.radians(10)), math.sin(math.radians(10))],
        [math.cos(math.radians(30)), math.sin(math.radians(30))],
        [0.0, 1.0],
        [-1.0, 0.0],
    ]
    patients = ["A", "A", "B", "C", "B"]
    findings = ["effusion", "effusion", "effusion", "normal", "normal"]
    relevant = torch.tensor([[a == b for b in findings] for a in findings])
    return torch.tensor(points, dtype=torch.float64), patients, relevant


def test_hand_computed_ranks_with_the_patients_other_studies_left_out():
    embeddings, patients, relevant = circle_studies()
    per_query = same_modality_per_query(embeddings, patients, relevant)
    # query 3 (90 deg, normal): gallery 0, 1, 2, 4 scored 0, cos 80, cos 60, 0; its match 4 ties with 0 -> rank 4;
    # AP orders the tie by index (0 before 4): the match is 4th -> 1/4. Query 0's gallery leaves out study 1 (A).
    np.testing.assert_array_equal(per_query["rank"], [1, 1, 1, 4, 1])
    np.testing.assert_allclose(per_query["average_precision"], [1, 1, 1, 0.25, 1])
    np.testing.assert_array_equal(per_query["n_gallery"], [3, 3, 3, 4, 3])
    np.testing.assert_array_equal(per_query["n_positive"], [1, 1, 2, 1, 1])
    summary = same_modality_retrieval(embeddings, patients, relevant, ks=(1, 3))
    assert summary == {
        "R@1": 0.8,
        "R@3": 0.8,
        "mAP": pytest.approx(0.85),
        "median_rank": 1.0,
        "n_queries": 5,
        "n_scored": 5,
        "n_without_positive": 0,
        "same_patient": "exclude",
    }


def test_hand_computed_ranks_with_the_patients_other_studies_as_matches():
    embeddings, patients, relevant = circle_studies()
    per_query = same_modality_per_query(embeddings, patients, relevant, same_patient="positive")
    # query 2 (B): matches 0, 1 (effusion) and 4 (B); ranked 1 (cos 20), 0 (cos 30), 3 (cos 60), 4 -> AP (1+1+3/4)/3
    np.testing.assert_array_equal(per_query["rank"], [1, 1, 1, 4, 1])
    np.testing.assert_allclose(per_query["average_precision"], [1, 1, (1 + 1 + 3 / 4) / 3, 0.25, 1])
    np.testing.assert_array_equal(per_query["n_gallery"], [4] * 5)
    # no finding labels: only the patient's other studies match (re-identification); C has no other study
    reidentify = same_modality_per_query(embeddings, patients, same_patient="positive")
    np.testing.assert_array_equal(reidentify["rank"], [1, 1, 4, np.nan, 2])
    np.testing.assert_allclose(reidentify["average_precision"], [1, 1, 0.25, np.nan, 0.5])
    summary = same_modality_retrieval(embeddings, patients, same_patient="positive", ks=(1,))
    assert summary["n_without_positive"] == 1 and summary["n_scored"] == 4
    assert summary["R@1"] == 0.5 and summary["median_rank"] == 1.5
    assert summary["mAP"] == pytest.approx((1 + 1 + 0.25 + 0.5) / 4)


@pytest.mark.parametrize("same_patient", ["exclude", "positive"])
def test_equals_cross_modal_functions_on_each_querys_gallery(same_patient):
    generator = np.random.default_rng(3)
    n = 40
    embeddings = generator.normal(size=(n, 6))
    embeddings[7] = embeddings[3]  # an exact tie between two gallery entries
    patients = np.array([f"p-{i // 3}" for i in range(n)])
    labels = (generator.random(size=(n, 3)) < 0.4).astype(float)
    relevant = torch.from_numpy(finding_relevance(labels, labels)[0])
    per_query = same_modality_per_query(embeddings, patients, relevant, same_patient, chunk_size=7)
    for query in range(n):
        gallery = [j for j in range(n) if j != query and (same_patient == "positive" or patients[j] != patients[query])]
        positives = relevant[query, gallery].clone()
        if same_patient == "positive":
            positives |= torch.from_numpy(patients[gallery] == patients[query])
        if not positives.any():
            assert math.isnan(per_query["rank"][query]) and math.isnan(per_query["average_precision"][query])
            continue
        query_row, gallery_rows = embeddings[query : query + 1], embeddings[gallery]
        expected_rank = retrieval_ranks(query_row, gallery_rows, positives[None, :])[0]
        expected_ap = mean_average_precision(query_row, gallery_rows, positives[None, :])
        assert per_query["rank"][query] == expected_rank.item(), query
        assert per_query["average_precision"][query] == pytest.approx(expected_ap, rel=1e-6), query
        assert per_query["n_gallery"][query] == len(gallery)
    whole = same_modality_per_query(embeddings, patients, relevant, same_patient)
    np.testing.assert_array_equal(whole["rank"], per_query["rank"])  # chunking changes nothing


def test_same_modality_rejects_what_it_cannot_score():
    embeddings, patients, relevant = circle_studies()
    with pytest.raises(ValueError, match="nothing is relevant"):
        same_modality_per_query(embeddings, patients)
    with pytest.raises(ValueError, match="same_patient must be one of"):
        same_modality_per_query(embeddings, patients, relevant, same_patient="ignore")
    with pytest.raises(ValueError, match="bool mask"):
        same_modality_per_query(embeddings, patients, relevant.int())
    with pytest.raises(ValueError, match="patients must be"):
        same_modality_per_query(embeddings, patients[:3], relevant)
    nobody_matches = torch.zeros(5, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="no query has a matching study"):
        same_modality_retrieval(embeddings, patients, nobody_matches)
