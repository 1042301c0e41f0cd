"""Tests of medclip.eval: metrics against scikit-learn, bootstrap behaviour, zero-shot, retrieval, probe, plots."""

from __future__ import annotations

import importlib.util

import matplotlib.image
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, average_precision_score, confusion_matrix, f1_score, roc_auc_score

from medclip.eval import (
    EMBEDDING_MAP_METHODS,
    accuracy,
    auroc,
    bootstrap_ci,
    class_embeddings,
    confusion,
    linear_probe,
    macro_f1,
    mean_average_precision,
    median_rank,
    plot_confusion,
    plot_embedding_map,
    plot_training_curve,
    recall_at_k,
    retrieval_ranks,
    similarity,
    zero_shot_predict,
    zero_shot_scores,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# --- metrics -------------------------------------------------------------------------------------------------------


def test_accuracy_and_confusion_match_sklearn(rng):
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, size=200))
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    matrix = confusion(y_true, y_pred, n_classes=5)  # class 4 never occurs: an all-zero row and column
    assert matrix.shape == (5, 5) and np.issubdtype(matrix.dtype, np.integer)
    np.testing.assert_array_equal(matrix, confusion_matrix(y_true, y_pred, labels=range(5)))
    assert matrix.sum() == 200


def test_macro_f1_matches_sklearn_including_unpredicted_class(rng):
    y_true = rng.integers(0, 5, size=300)
    y_pred = np.where(rng.random(300) < 0.5, y_true, rng.integers(0, 5, size=300))
    y_pred[y_pred == 3] = 1  # class 3 is never predicted: its F1 is 0 and drags the macro average down
    assert 3 in y_true and 3 not in y_pred
    expected = f1_score(y_true, y_pred, average="macro")
    assert macro_f1(y_true, y_pred) == pytest.approx(expected)
    # an explicit label set with a class (7) absent from both counts as F1 = 0, as in sklearn with zero_division=0
    labels = [0, 1, 2, 3, 4, 7]
    expected_labels = f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)
    assert macro_f1(y_true, y_pred, labels=labels) == pytest.approx(expected_labels)
    assert macro_f1(y_true, y_pred, labels=labels) < macro_f1(y_true, y_pred)
    # string labels work as well
    names = np.array(["normal", "effusion", "nodule", "mass", "edema"])
    assert macro_f1(names[y_true], names[y_pred]) == pytest.approx(expected)


def test_auroc_matches_sklearn_with_nan_for_undefined_classes(rng):
    y_true = rng.integers(0, 3, size=150)  # class 3 of 4 has no positives
    scores = rng.random((150, 4)) + 0.8 * np.eye(4)[y_true]
    scores = np.round(scores, 1)  # coarse scores create ties, which count one half in both implementations
    result = auroc(y_true, scores)
    assert result.shape == (4,)
    for c in range(3):
        assert result[c] == pytest.approx(roc_auc_score(y_true == c, scores[:, c]))
    assert np.isnan(result[3])
    assert np.all(result[:3] > 0.6)


def test_auroc_multilabel_skips_unknown_labels(rng):
    labels = (rng.random((120, 3)) < 0.4).astype(float)
    scores = rng.random((120, 3)) + labels
    with_unknown = labels.copy()
    with_unknown[rng.random((120, 3)) < 0.2] = np.nan  # blank manifest cells: unknown, not negative
    with_unknown[:, 2] = np.where(np.isnan(with_unknown[:, 2]), np.nan, 0.0)  # finding 2: no known positive
    result = auroc(with_unknown, scores)
    for c in range(2):
        known = ~np.isnan(with_unknown[:, c])
        assert result[c] == pytest.approx(roc_auc_score(with_unknown[known, c], scores[known, c]))
    assert np.isnan(result[2])


def test_metric_errors_name_the_problem():
    with pytest.raises(ValueError, match="outside"):
        confusion([0, 1, 5], [0, 1, 1], n_classes=3)
    with pytest.raises(ValueError, match="rows"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        auroc(np.array([[0.0, 2.0], [1.0, 0.0]]), np.zeros((2, 2)))


def _noisy_predictions(rng: np.random.Generator, n: int, correct: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    y_true = rng.integers(0, 3, size=n)
    y_pred = np.where(rng.random(n) < correct, y_true, (y_true + 1) % 3)
    return y_true, y_pred


def test_bootstrap_ci_contains_estimate_and_narrows_with_more_data(rng):
    y_small, p_small = _noisy_predictions(rng, 100)
    y_large, p_large = _noisy_predictions(rng, 2000)
    low_small, high_small = bootstrap_ci(accuracy, y_small, p_small, n_boot=500)
    low_large, high_large = bootstrap_ci(accuracy, y_large, p_large, n_boot=500)
    assert low_small <= accuracy(y_small, p_small) <= high_small
    assert low_large <= accuracy(y_large, p_large) <= high_large
    assert 0 < high_large - low_large < (high_small - low_small) / 2  # width shrinks like 1/sqrt(n)
    # seeded: the same call gives the same interval
    assert bootstrap_ci(accuracy, y_small, p_small, n_boot=500) == (low_small, high_small)
    assert bootstrap_ci(accuracy, y_small, p_small, n_boot=500, seed=1) != (low_small, high_small)


def test_bootstrap_group_resampling_is_wider_for_duplicated_patients(rng):
    # 40 patients, each correct or wrong on all of their 25 identical rows: 1000 rows but only 40 independent units
    patient_true, patient_pred = _noisy_predictions(rng, 40, correct=0.6)
    y_true, y_pred = np.repeat(patient_true, 25), np.repeat(patient_pred, 25)
    patients = np.repeat([f"patient-{i:03d}" for i in range(40)], 25)
    row_low, row_high = bootstrap_ci(accuracy, y_true, y_pred, n_boot=400)
    group_low, group_high = bootstrap_ci(accuracy, y_true, y_pred, groups=patients, n_boot=400)
    estimate = accuracy(y_true, y_pred)
    assert group_low <= estimate <= group_high
    assert group_high - group_low > 3 * (row_high - row_low)
    # group resampling of one-row groups is plain row resampling
    assert bootstrap_ci(accuracy, patient_true, patient_pred, groups=np.arange(40), n_boot=200) == pytest.approx(
        bootstrap_ci(accuracy, patient_true, patient_pred, n_boot=200), abs=0.15
    )


def test_bootstrap_ci_of_per_class_auroc(rng):
    y_true = rng.integers(0, 3, size=300)
    scores = rng.random((300, 3)) + np.eye(3)[y_true]
    low, high = bootstrap_ci(auroc, y_true, scores, n_boot=200)
    estimate = auroc(y_true, scores)
    assert low.shape == high.shape == (3,)
    assert np.all(low <= estimate) and np.all(estimate <= high)
    with pytest.raises(ValueError, match="groups has"):
        bootstrap_ci(accuracy, y_true, y_true, groups=np.arange(10))


# --- zero-shot -----------------------------------------------------------------------------------------------------


def test_zero_shot_recovers_class_of_noisy_centres():
    generator = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 32, generator=generator), dim=-1)  # (C, D)
    truth = torch.arange(4).repeat_interleave(10)  # (N,)
    query = centres[truth] * 3.0 + 0.05 * torch.randn(40, 32, generator=generator)  # scale must not matter
    probabilities = zero_shot_scores(query, centres)
    assert probabilities.shape == (40, 4)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(40))
    torch.testing.assert_close(zero_shot_predict(query, centres), truth)
    assert probabilities[torch.arange(40), truth].min() > 0.9  # logit scale 100 makes confident predictions
    softer = zero_shot_scores(query, centres, logit_scale=1.0)
    assert softer.max() < probabilities.max()  # a lower inverse temperature flattens the distribution


def test_prompt_ensembling_layouts_agree_and_normalise_each_prompt():
    generator = torch.Generator().manual_seed(1)
    prompts = torch.randn(3, 5, 16, generator=generator)  # (C, P, D)
    expected = F.normalize(F.normalize(prompts, dim=-1).mean(dim=1), dim=-1)  # (C, D)
    torch.testing.assert_close(class_embeddings(prompts), expected)
    torch.testing.assert_close(class_embeddings(prompts.reshape(15, 16), prompts_per_class=5), expected)
    torch.testing.assert_close(class_embeddings(list(prompts)), expected)
    # rescaling one prompt changes nothing: prompts are normalised before averaging
    rescaled = prompts.clone()
    rescaled[0, 0] *= 50.0
    torch.testing.assert_close(class_embeddings(rescaled), expected)
    # classes may have different numbers of prompts
    ragged = class_embeddings([prompts[0, :2], prompts[1], prompts[2, :1]])
    assert ragged.shape == (3, 16)
    torch.testing.assert_close(ragged[2], F.normalize(prompts[2, 0], dim=-1))
    torch.testing.assert_close(ragged.norm(dim=-1), torch.ones(3))
    with pytest.raises(ValueError, match="groups of 4"):
        class_embeddings(prompts.reshape(15, 16), prompts_per_class=4)


# --- retrieval -----------------------------------------------------------------------------------------------------


def _naive_hit(scores: np.ndarray, positive: np.ndarray, k: int) -> bool:
    top_k = np.argsort(-scores)[:k]
    return bool(positive[top_k].any())


def _naive_rank(scores: np.ndarray, positive: np.ndarray) -> int:
    order = np.argsort(-scores)
    return int(np.flatnonzero(positive[order])[0]) + 1


def _paired_embeddings(seed: int, n: int = 60, dim: int = 16, noise: float = 2.0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(n, dim, generator=generator)
    query = target + noise * torch.randn(n, dim, generator=generator)  # noisy views of their paired target
    return query, target


def test_similarity_is_cosine():
    query, target = _paired_embeddings(0, n=5)
    expected = F.cosine_similarity(query[:, None, :], target[None, :, :], dim=-1)
    torch.testing.assert_close(similarity(query, target), expected)


def test_recall_at_k_paired_matches_naive_loop_and_chunking():
    query, target = _paired_embeddings(2)
    scores = similarity(query, target).numpy()
    ks = (1, 5, 10)
    expected = {f"R@{k}": np.mean([_naive_hit(scores[i], np.eye(60, dtype=bool)[i], k) for i in range(60)]) for k in ks}
    result = recall_at_k(query, target, ks=ks)
    assert result == pytest.approx(expected)
    assert 0.0 < result["R@1"] < result["R@10"] < 1.0  # the noise level makes this a non-trivial task
    for chunk_size in (1, 7, 60, 1000):
        assert recall_at_k(query, target, ks=ks, chunk_size=chunk_size) == result
    naive_ranks = [_naive_rank(scores[i], np.eye(60, dtype=bool)[i]) for i in range(60)]
    np.testing.assert_array_equal(retrieval_ranks(query, target, chunk_size=7).numpy(), naive_ranks)
    assert median_rank(query, target) == pytest.approx(np.median(naive_ranks))
    assert median_rank(query, target, chunk_size=4) == median_rank(query, target)


def test_recall_at_k_with_positive_mask_matches_naive_loop():
    generator = torch.Generator().manual_seed(3)
    query_types = torch.randint(0, 6, (50,), generator=generator)  # e.g. the cell type of each query cell
    target_types = torch.randint(0, 6, (80,), generator=generator)
    target_types[:6] = torch.arange(6)  # every type has at least one target
    centres = torch.randn(6, 16, generator=generator)
    query = centres[query_types] + 1.5 * torch.randn(50, 16, generator=generator)
    target = centres[target_types] + 1.5 * torch.randn(80, 16, generator=generator)
    positives = (query_types[:, None] == target_types[None, :]).numpy()  # (N, M) same type
    scores = similarity(query, target).numpy()
    ks = (1, 3, 5)
    expected = {f"R@{k}": np.mean([_naive_hit(scores[i], positives[i], k) for i in range(50)]) for k in ks}
    result = recall_at_k(query, target, ks=ks, positives=positives)
    assert result == pytest.approx(expected)
    assert result["R@1"] < 1.0
    assert recall_at_k(query, target, ks=ks, positives=torch.from_numpy(positives), chunk_size=3) == result
    naive_ranks = [_naive_rank(scores[i], positives[i]) for i in range(50)]
    assert median_rank(query, target, positives=positives, chunk_size=9) == pytest.approx(np.median(naive_ranks))
    # mAP against sklearn's average precision per query
    expected_map = np.mean([average_precision_score(positives[i], scores[i]) for i in range(50)])
    assert mean_average_precision(query, target, positives=positives, chunk_size=8) == pytest.approx(expected_map)


def test_ties_count_against_the_query_and_bad_masks_are_rejected():
    collapsed = torch.ones(10, 8)  # a collapsed model: every embedding identical, every score tied
    assert recall_at_k(collapsed, collapsed, ks=(1, 10)) == {"R@1": 0.0, "R@10": 1.0}
    assert median_rank(collapsed, collapsed) == 10.0
    query, target = _paired_embeddings(4, n=6)
    no_positive = np.eye(6, dtype=bool)
    no_positive[2] = False
    with pytest.raises(ValueError, match="1 queries .* no positive"):
        recall_at_k(query, target, positives=no_positive)
    with pytest.raises(ValueError, match="as many targets"):
        recall_at_k(query, target[:5])
    with pytest.raises(ValueError, match="boolean"):
        recall_at_k(query, target, positives=np.eye(6))


# --- linear probe --------------------------------------------------------------------------------------------------


def _separable(seed: int, n_per_class: int, n_classes: int = 3, dim: int = 12):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def test_linear_probe_separable_and_deterministic():
    train_x, train_y = _separable(0, 40)
    test_x, test_y = _separable(0, 15)  # same seed: same class centres, fresh noise draws below
    test_x = test_x + np.random.default_rng(9).normal(size=test_x.shape)
    result = linear_probe(train_x, train_y, test_x, test_y, seed=0)
    assert result["accuracy"] > 0.95 and result["macro_f1"] > 0.95
    assert result["predictions"].shape == (45,)
    assert result["probabilities"].shape == (45, 3)
    np.testing.assert_allclose(result["probabilities"].sum(axis=1), 1.0)
    np.testing.assert_array_equal(result["classes"], [0, 1, 2])
    assert result["C"] in (0.01, 0.1, 1.0, 10.0)
    again = linear_probe(train_x, train_y, test_x, test_y, seed=0)
    np.testing.assert_array_equal(again["probabilities"], result["probabilities"])
    assert again["C"] == result["C"]
    fixed = linear_probe(train_x, train_y, test_x, test_y, C=0.5)
    assert fixed["C"] == 0.5 and fixed["accuracy"] > 0.95


def test_linear_probe_rejects_what_it_cannot_fit():
    train_x, train_y = _separable(1, 5)
    train_y[0] = 7  # a class with a single training example: no stratified CV possible
    with pytest.raises(ValueError, match="pass C explicitly"):
        linear_probe(train_x, train_y, train_x, train_y)
    with pytest.raises(ValueError, match="single class"):
        linear_probe(train_x, np.zeros(len(train_x), dtype=int), train_x, train_y)


# --- plots ---------------------------------------------------------------------------------------------------------


def _assert_png(path, min_height: int = 200, min_width: int = 200) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= min_height and image.shape[1] >= min_width
    assert image[..., :3].std() > 0.01  # something was drawn, not a blank canvas


def test_plot_confusion_writes_png(tmp_path):
    names = ["normal", "pleural effusion", "pulmonary nodule", "consolidation"]
    matrix = np.array([[30, 2, 1, 0], [4, 20, 0, 1], [0, 3, 12, 0], [0, 0, 0, 0]])  # last class: no rows
    path = plot_confusion(matrix, names, tmp_path / "plots" / "confusion.png", title="Zero-shot")
    assert path == tmp_path / "plots" / "confusion.png"
    _assert_png(path)
    _assert_png(plot_confusion(matrix, names, tmp_path / "counts.png", title="Zero-shot", normalize=False))
    with pytest.raises(ValueError, match="class names"):
        plot_confusion(matrix, names[:3], tmp_path / "bad.png")


def _cells_and_prompts(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 24))
    cell_labels = np.repeat(np.arange(3), 20)
    cells = centres[cell_labels] + 0.3 * rng.normal(size=(60, 24))
    prompts = centres + 0.1 * rng.normal(size=(3, 24))
    embeddings = np.concatenate([cells, prompts])  # (63, D)
    labels = np.concatenate([cell_labels, np.arange(3)])
    modalities = ["cell"] * 60 + ["text prompt"] * 3
    return embeddings, labels, modalities


def test_plot_embedding_map_pca_with_modality_markers(tmp_path):
    embeddings, labels, modalities = _cells_and_prompts()
    names = ["T cell", "B cell", "monocyte"]
    path = plot_embedding_map(
        embeddings, labels, names, tmp_path / "map.png", title="Cells and prompts", method="pca",
        modality_marker=modalities,
    )  # fmt: skip
    _assert_png(path)
    with pytest.raises(KeyError, match="unknown embedding map method"):
        plot_embedding_map(embeddings, labels, names, tmp_path / "x.png", method="tsne")
    with pytest.raises(ValueError, match="outside"):
        plot_embedding_map(embeddings, labels + 1, names, tmp_path / "x.png", method="pca")
    with pytest.warns(UserWarning, match="PCA instead of umap"):
        _assert_png(plot_embedding_map(embeddings[:4], labels[:4], names, tmp_path / "tiny.png"))


@pytest.mark.skipif(importlib.util.find_spec("umap") is None, reason="umap-learn not installed")
def test_plot_embedding_map_umap_is_reproducible(tmp_path):
    embeddings, labels, modalities = _cells_and_prompts(1)
    projection = EMBEDDING_MAP_METHODS.get("umap")
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    first, second = projection(unit, 0), projection(unit, 0)
    assert first.shape == (63, 2)
    np.testing.assert_allclose(first, second)  # a fixed random_state gives the same map
    path = plot_embedding_map(embeddings, labels, ["a", "b", "c"], tmp_path / "umap.png", modality_marker=modalities)
    _assert_png(path)


def test_plot_training_curve(tmp_path):
    steps = np.arange(200)
    loss = 3.0 * np.exp(-steps / 50) + 0.1 * np.random.default_rng(0).random(200)
    _assert_png(plot_training_curve(steps, loss, tmp_path / "loss.png"))
    terms = {"total": loss, "contrastive": loss * 0.8}
    _assert_png(plot_training_curve(steps[:5], {k: v[:5] for k, v in terms.items()}, tmp_path / "short.png"))
    with pytest.raises(ValueError, match="shape"):
        plot_training_curve(steps, loss[:10], tmp_path / "bad.png")
