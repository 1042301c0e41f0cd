"""Clinical-recipe statistics on fixed and simulated data: vs scikit-learn, bootstrap coverage, indexes, hygiene."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, ndcg_score, roc_curve

from medclip.eval import auroc, bootstrap_ci
from medclip.eval.calibration import expected_calibration_error, reliability_curve
from medclip.eval.classification import average_precision, choose_threshold, threshold_metrics
from medclip.eval.findings import choose_thresholds, evaluate_findings, evaluate_multiclass
from medclip.eval.hygiene import SeenPatientsError, check_unseen_patients
from medclip.eval.index import build_index, load_index
from medclip.eval.metrics import _binary_auroc
from medclip.eval.prompts import PromptSetError, read_prompt_set
from medclip.eval.ranking import average_precision_per_query, finding_relevance, ndcg_per_query
from medclip.eval.report import jsonable, write_json
from medclip.eval.zero_shot_binary import binary_zero_shot_scores


@pytest.fixture
def binary_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    scores = np.round(y * 0.8 + rng.normal(size=200), 1)  # rounded: ties exercise the tie handling
    return y, scores


def test_average_precision_matches_sklearn_with_ties(binary_data):
    y, scores = binary_data
    assert average_precision(y, scores) == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    assert math.isnan(average_precision(np.zeros(5), np.arange(5.0)))


def test_threshold_metrics_match_confusion_counts(binary_data):
    y, scores = binary_data
    called = scores >= 0.3
    tp, fp = np.sum(called & (y == 1)), np.sum(called & (y == 0))
    fn, tn = np.sum(~called & (y == 1)), np.sum(~called & (y == 0))
    values = threshold_metrics(y, scores, 0.3)
    assert values["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert values["specificity"] == pytest.approx(tn / (tn + fp))
    assert values["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert math.isnan(threshold_metrics(np.zeros(4), np.arange(4.0), 1.0)["sensitivity"])


def test_youden_threshold_matches_sklearn_roc(binary_data):
    y, scores = binary_data
    false_positive_rate, true_positive_rate, thresholds = roc_curve(y, scores)
    best = thresholds[np.argmax(true_positive_rate - false_positive_rate)]
    assert choose_threshold(y, scores, "youden") == pytest.approx(best)
    with pytest.raises(ValueError, match="single_class_validation"):
        choose_threshold(np.ones(5), np.arange(5.0))


def test_reliability_curve_matches_sklearn_and_ece():
    rng = np.random.default_rng(0)
    probability = rng.uniform(size=500)
    outcome = (rng.uniform(size=500) < probability**2).astype(int)  # over-confident scores
    observed, predicted = calibration_curve(outcome, probability, n_bins=10, strategy="uniform")
    curve = reliability_curve(outcome, probability, 10)
    np.testing.assert_allclose(curve["observed_frequency"], observed)
    np.testing.assert_allclose(curve["mean_probability"], predicted)
    expected = np.sum(curve["count"] * np.abs(observed - predicted)) / 500
    assert expected_calibration_error(outcome, probability, 10) == pytest.approx(expected)
    assert expected_calibration_error(outcome, probability) > 0.1
    assert expected_calibration_error([0, 1, 1, 0], [0.0, 1.0, 1.0, 0.0]) == 0.0


def test_per_query_average_precision_and_ndcg_match_sklearn():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(12, 30))
    relevant = rng.uniform(size=(12, 30)) < 0.2
    relevant[:, 0] = True
    gains = rng.integers(0, 4, size=(12, 30)).astype(float)
    gains[:, 1] = 1.0
    ap = average_precision_per_query(scores, relevant)
    ndcg = ndcg_per_query(scores, gains, k=10)
    for i in range(12):
        assert ap[i] == pytest.approx(average_precision_score(relevant[i], scores[i]))
        assert ndcg[i] == pytest.approx(ndcg_score(gains[i : i + 1], scores[i : i + 1], k=10))
    assert math.isnan(average_precision_per_query(scores[:1], np.zeros((1, 30), bool))[0])


def test_finding_relevance_exact_sets_and_jaccard():
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 0], [1, 0, 1]], dtype=float)
    same, jaccard = finding_relevance(labels, labels)
    assert same[0].tolist() == [True, False, False, True]
    assert jaccard[0, 1] == pytest.approx(0.5) and jaccard[2, 2] == 1.0 and jaccard[0, 2] == 0.0


def _simulated_study(rng, n_patients=60, rows_per_patient=5, separation=1.0):
    """Patient-level disease status; every row of a patient shares a random patient effect (correlated rows)."""
    label = rng.integers(0, 2, n_patients)
    effect = rng.normal(size=n_patients)
    patients = np.repeat(np.arange(n_patients), rows_per_patient)
    scores = separation * label[patients] + effect[patients] + 0.5 * rng.normal(size=len(patients))
    return label[patients], scores, patients


def test_patient_bootstrap_covers_the_true_auroc_and_row_bootstrap_does_not():
    # Every positive-negative pair comes from two different patients, so the population AUROC is
    # P(N(1, 1.25) > N(0, 1.25)) = Phi(1 / sqrt(2.5)).
    true_auroc = norm.cdf(1.0 / math.sqrt(2.5))
    rng = np.random.default_rng(7)
    covered = {"patient": 0, "row": 0}
    repetitions = 80

    def metric(y, s):
        return _binary_auroc(y == 1, s)  # the AUROC `auroc` computes, without its input checks (12 000 calls)

    for repetition in range(repetitions):
        y, scores, patients = _simulated_study(rng)
        for unit, groups in (("patient", patients), ("row", None)):
            low, high = bootstrap_ci(metric, y, scores, groups=groups, n_boot=150, seed=repetition)
            covered[unit] += low <= true_auroc <= high
    patient_coverage, row_coverage = covered["patient"] / repetitions, covered["row"] / repetitions
    print(f"coverage of the true AUROC: patients {patient_coverage:.2f}, rows {row_coverage:.2f}")
    assert patient_coverage >= 0.85, covered
    assert row_coverage <= patient_coverage - 0.15, covered  # resampling rows ignores within-patient correlation


def test_evaluate_findings_cis_bracket_values_and_nan_labels_are_left_out():
    rng = np.random.default_rng(2)
    y, scores, patients = _simulated_study(rng, n_patients=40, rows_per_patient=3, separation=2.0)
    y2 = y.astype(float).copy()
    y2[:10] = np.nan  # unknown labels of one finding
    labels = np.stack([y.astype(float), y2], axis=1)
    probabilities = 1 / (1 + np.exp(-np.stack([scores, scores], axis=1)))
    thresholds, sources = choose_thresholds(labels, probabilities, 2)
    sites = ["A" if p % 2 else "B" for p in patients]
    result = evaluate_findings(
        ["a", "b"], labels, probabilities, patients, thresholds, sources, sites, n_boot=100, min_site_rows=10
    )
    for name in ("a", "b"):
        for metric in ("auroc", "auprc", "sensitivity", "specificity", "f1", "ece"):
            entry = result["findings"][name][metric]
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], (name, metric)
    assert result["findings"]["b"]["n_rows"] == len(y) - 10
    assert result["findings"]["a"]["auroc"]["value"] == pytest.approx(auroc(y, np.stack([-scores, scores], 1))[1])
    assert set(result["by_site"]) == {"A", "B"} and "macro" in result["by_site"]["A"]
    assert sources == ["validation:youden"] * 2
    json.dumps(jsonable(result), allow_nan=False)


def test_evaluate_multiclass_counts_rows_without_one_class():
    y = np.array([[1, 0], [0, 1], [1, 0], [np.nan, 1], [1, 1]] * 4, dtype=float)
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5], [0.5, 0.5]] * 4)
    result = evaluate_multiclass(y, probabilities, np.arange(20) // 2, n_boot=50)
    assert result["n_rows"] == 12 and result["rows_without_single_class"] == 8
    assert result["accuracy"]["value"] == pytest.approx(8 / 12)


def test_binary_zero_shot_scores_prefer_the_closer_prompt():
    query = np.array([[1.0, 0.0], [0.0, 1.0]])
    scores = binary_zero_shot_scores(query, positive=[[1.0, 0.0]], negative=[[0.0, 1.0]], logit_scale=10.0)
    assert scores.shape == (2, 1) and scores[0, 0] > 0.99 and scores[1, 0] < 0.01


@pytest.mark.parametrize("kind,options", [("faiss", {}), ("faiss_ivf", {"nlist": 8, "nprobe": 8})])
def test_faiss_and_exact_search_return_the_same_top_k_and_survive_reload(tmp_path, kind, options):
    rng = np.random.default_rng(4)
    vectors, queries = rng.normal(size=(400, 24)), rng.normal(size=(25, 24))
    studies = [f"s-{i:04d}" for i in range(400)]
    patients = [f"p-{i // 2:04d}" for i in range(400)]
    exact = build_index("exact", vectors, studies, patients, {"checkpoint_sha256": "abc"})
    other = build_index(kind, vectors, studies, patients, options=options)
    exact_scores, exact_positions = exact.search(queries, 10)
    other_scores, other_positions = other.search(queries, 10)
    np.testing.assert_array_equal(exact_positions, other_positions)
    np.testing.assert_allclose(exact_scores, other_scores, atol=1e-5)
    for index in (exact, other):
        reloaded = load_index(index.save(tmp_path / index.kind))
        assert type(reloaded) is type(index) and reloaded.studies == studies
        np.testing.assert_array_equal(reloaded.search(queries, 10)[1], exact_positions)
    assert load_index(tmp_path / "exact").metadata == {"checkpoint_sha256": "abc"}
    hits = exact.hits(queries[0], 3)
    assert [hit.study for hit in hits] == [studies[p] for p in exact_positions[0, :3]]


def test_unseen_patient_check_refuses_overlap_unless_allowed(tmp_path):
    (tmp_path / "data_provenance.json").write_text(
        json.dumps({"pseudonym_key_fingerprint": "k1", "patients": {"train": ["p-1", "p-2"], "test": ["p-9"]}})
    )
    assert check_unseen_patients(tmp_path, ["p-9"], "k1")["seen_patients"] == 0
    with pytest.raises(SeenPatientsError, match=r"\[seen_patients\] 1 of 2"):
        check_unseen_patients(tmp_path, ["p-1", "p-9"], "k1")
    record = check_unseen_patients(tmp_path, ["p-1", "p-9"], "k1", allow_seen_patients=True)
    assert record["seen_patients"] == 1 and record["allow_seen_patients"]
    with pytest.raises(SeenPatientsError, match="key_mismatch"):
        check_unseen_patients(tmp_path, ["p-9"], "other-key")
    with pytest.raises(SeenPatientsError, match="no_provenance"):
        check_unseen_patients(tmp_path / "missing", ["p-9"], "k1")


def test_prompt_set_expands_templates_and_rejects_bad_files(tmp_path):
    good = tmp_path / "set.yaml"
    good.write_text(
        "name: demo\ntemplates: ['a CT showing {}.', '{}']\nfindings:\n"
        "  effusion: {positive: [effusion, pleural fluid], negative: [no effusion]}\n  nodule: {positive: [nodule]}\n"
    )
    prompts = read_prompt_set(good)
    assert prompts.positive_prompts("effusion") == [
        "a CT showing effusion.",
        "effusion",
        "a CT showing pleural fluid.",
        "pleural fluid",
    ]
    assert prompts.negative_prompts("effusion") == ["a CT showing no effusion.", "no effusion"]
    assert len(prompts.sha256) == 64
    with pytest.raises(PromptSetError, match="no `negative`"):
        prompts.require_negatives(["nodule"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("templates: ['no placeholder']\nfindings: {x: {positive: [y]}}\n")
    with pytest.raises(PromptSetError, match="exactly one"):
        read_prompt_set(bad)
    bad.write_text("findings: {x: {positive: []}}\n")
    with pytest.raises(PromptSetError, match=r"findings\.x\.positive"):
        read_prompt_set(bad)


def test_metric_files_are_strict_json(tmp_path):
    path = write_json(tmp_path / "m.json", {"a": float("nan"), "b": np.float32(0.5), "c": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": None, "b": 0.5, "c": [0, 1]}


@pytest.mark.parametrize("command", ["zero-shot", "retrieve", "probe", "embed"])
def test_bundled_configs_of_the_clinical_recipes_validate(command):
    from medclip import config
    from medclip.eval.prompts import resolve_prompt_set
    from medclip.recipe_registry import RECIPES, bundled_configs

    recipe = RECIPES.get(command)
    paths = bundled_configs(recipe)
    assert paths, f"{command} ships no config"
    for path in paths:
        loaded = config.load(recipe.Config, path)
        assert loaded.checkpoint and loaded.manifest
        if hasattr(loaded, "prompts"):
            assert read_prompt_set(resolve_prompt_set(loaded.prompts)).findings


def test_every_bundled_prompt_set_reads():
    from medclip.eval.prompts import BUNDLED_PROMPT_SETS

    for path in sorted(BUNDLED_PROMPT_SETS.glob("*.yaml")):
        prompts = read_prompt_set(path)
        assert all(prompts.positive_prompts(name) for name in prompts.findings), path.name


def test_retrieval_keeps_one_study_per_patient():
    from recipes.retrieval import first_study_per_patient

    keep = first_study_per_patient(np.array(["p-b", "p-a", "p-b", "p-c", "p-a"]))
    assert keep.tolist() == [True, True, False, True, False]
