"""Regression probes against scikit-learn (Ridge, StandardScaler, GridSearchCV, r2_score, MAE, RMSE) and scipy
(pearsonr) as the independent references, and the patient bootstrap against ``bootstrap_ci`` with sklearn metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from medclip.eval.metrics import bootstrap_ci
from medclip.eval.regression import (
    ALPHA_GRID,
    choose_alpha,
    evaluate_regression,
    regression_metrics,
    regression_probe,
    ridge_path,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def sklearn_probe(alpha: float) -> Pipeline:
    return Pipeline([("standardise", StandardScaler()), ("ridge", Ridge(alpha=alpha))])


def linear_data(rng, n: int, d: int, noise: float = 0.5):
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 5, size=d) + rng.normal(size=d)  # unequal scales and offsets
    weights = rng.normal(size=d)
    return x, x @ weights + 50 + noise * rng.normal(size=n)


@pytest.mark.parametrize(("n", "d"), [(60, 8), (15, 40)])  # more rows than dimensions, and fewer (rank deficient)
def test_ridge_path_matches_sklearn_ridge(rng, n, d):
    x, y = linear_data(rng, n, d)
    x[:, 3] = 7.0  # a constant dimension: scale 1, as StandardScaler
    test_x = rng.normal(size=(10, d))
    for probe in ridge_path(x, y, ALPHA_GRID):
        reference = sklearn_probe(probe.alpha).fit(x, y)
        np.testing.assert_allclose(probe.coef, reference["ridge"].coef_, rtol=1e-7, atol=1e-9)
        assert probe.intercept == pytest.approx(reference["ridge"].intercept_, rel=1e-9)
        np.testing.assert_allclose(probe.predict(test_x), reference.predict(test_x), rtol=1e-8, atol=1e-8)


def test_cross_validated_alpha_matches_grid_search_on_the_same_patient_folds(rng):
    x, y = linear_data(rng, 80, 30, noise=4.0)
    patients = np.repeat(np.arange(20), 4).astype(str)
    alpha, source = choose_alpha(x, y, train_groups=patients)
    search = GridSearchCV(
        sklearn_probe(1.0),
        {"ridge__alpha": list(ALPHA_GRID)},
        scoring="neg_mean_squared_error",
        cv=list(GroupKFold(n_splits=5).split(x, y, groups=patients)),
    ).fit(x, y)
    assert alpha == search.best_params_["ridge__alpha"] and source == "cv:5-fold by patient"
    assert ALPHA_GRID[0] < alpha < ALPHA_GRID[-1]  # the data choose an inner value, so the test means something


def test_validation_alpha_matches_a_sklearn_loop(rng):
    x, y = linear_data(rng, 70, 25, noise=3.0)
    train, val = slice(0, 40), slice(40, 70)
    alpha, source = choose_alpha(x[train], y[train], x[val], y[val])
    errors = {a: np.mean((sklearn_probe(a).fit(x[train], y[train]).predict(x[val]) - y[val]) ** 2) for a in ALPHA_GRID}
    assert alpha == min(errors, key=errors.get) and source == "validation"


def test_metrics_match_sklearn_and_scipy(rng):
    y_true = rng.normal(50, 10, size=40)
    y_pred = y_true + rng.normal(0, 6, size=40) - 2
    r2, mae, rmse, r = regression_metrics(y_true, y_pred)
    assert r2 == pytest.approx(r2_score(y_true, y_pred), rel=1e-12)
    assert mae == pytest.approx(mean_absolute_error(y_true, y_pred), rel=1e-12)
    assert rmse == pytest.approx(root_mean_squared_error(y_true, y_pred), rel=1e-12)
    assert r == pytest.approx(pearsonr(y_true, y_pred).statistic, rel=1e-12)
    constant = regression_metrics(np.full(5, 3.0), np.arange(5.0))
    assert np.isnan(constant[0]) and np.isnan(constant[3]) and constant[1] == pytest.approx(7 / 5)


def test_patient_bootstrap_equals_bootstrap_ci_with_sklearn_metrics(rng):
    y_true = rng.normal(50, 10, size=60)
    y_pred = y_true + rng.normal(0, 5, size=60)
    patients = np.repeat([f"p-{i}" for i in range(20)], 3)
    result = evaluate_regression(y_true, y_pred, patients, n_boot=200, seed=7)

    def sklearn_metrics(truth, predicted):
        return np.array(
            [
                r2_score(truth, predicted),
                mean_absolute_error(truth, predicted),
                root_mean_squared_error(truth, predicted),
                pearsonr(truth, predicted).statistic,
            ]
        )

    low, high = bootstrap_ci(sklearn_metrics, y_true, y_pred, groups=patients, n_boot=200, seed=7)
    for m, name in enumerate(("r2", "mae", "rmse", "pearson_r")):
        assert result[name]["ci_low"] == pytest.approx(low[m], rel=1e-9)
        assert result[name]["ci_high"] == pytest.approx(high[m], rel=1e-9)
        assert result[name]["ci_low"] <= result[name]["value"] <= result[name]["ci_high"]
    assert result["n_rows"] == 60 and result["n_patients"] == 20


def test_probe_recovers_a_linear_target_and_not_noise_with_unknown_rows_counted(rng):
    n_train, n_val, n_test, d = 120, 40, 60, 16
    x = rng.normal(size=(n_train + n_val + n_test, d))
    ejection_fraction = 55 + 8 * x[:, 0] - 4 * x[:, 1] + rng.normal(0, 2, size=len(x))
    noise_score = rng.normal(size=len(x))
    y = np.stack([ejection_fraction, noise_score], axis=1)  # (N, 2)
    y[::7, 0] = np.nan  # unknown for some rows
    train, val, test = slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
    patients = np.array([f"p-{i // 2}" for i in range(len(x))])
    result = regression_probe(
        ["ejection fraction", "noise"],
        x[train],
        y[train],
        x[test],
        y[test],
        patients[test],
        train_patients=patients[train],
        val_x=x[val],
        val_y=y[val],
        n_boot=200,
    )
    predictions = result.pop("predictions")
    json.dumps(result)
    fraction, noise = result["targets"]["ejection fraction"], result["targets"]["noise"]
    assert predictions.shape == (n_test, 2) and np.all(np.isfinite(predictions))
    assert fraction["r2"]["value"] > 0.85 and fraction["r2"]["ci_low"] > 0.7
    assert fraction["mae"]["value"] < 0.5 * fraction["mean_baseline"]["mae"]
    assert fraction["alpha_source"] == "validation" and noise["alpha_source"] == "validation"
    known = ~np.isnan(y[:, 0])
    assert fraction["unknown"] == {
        "train": int((~known[train]).sum()),
        "val": int((~known[val]).sum()),
        "test": int((~known[test]).sum()),
    }
    assert fraction["n_train"] == int(known[train].sum()) and fraction["n_rows"] == int(known[test].sum())
    assert noise["r2"]["value"] < 0.1 and noise["r2"]["ci_low"] < 0 < noise["r2"]["ci_high"] + 0.2
    assert noise["ridge_alpha"] >= fraction["ridge_alpha"]  # nothing to learn: the penalty goes up


def test_probe_falls_back_to_cross_validation_and_refuses_what_it_cannot_fit(rng):
    x, y = linear_data(rng, 30, 5)
    val_y = np.full((6, 1), np.nan)
    val_y[0] = 1.0
    result = regression_probe(["age"], x, y, x[:5], y[:5], ["a"] * 5, val_x=x[:6], val_y=val_y, n_boot=20)
    assert result["targets"]["age"]["alpha_source"] == "cv:5-fold (fewer than 3 known validation rows)"
    given = regression_probe(["age"], x, y, x[:5], y[:5], ["a"] * 5, ridge_alpha=2.5, n_boot=20)["targets"]["age"]
    assert given["ridge_alpha"] == 2.5 and given["alpha_source"] == "given"
    unknown_test = regression_probe(["age"], x, y, x[:2], [np.nan, np.nan], ["a", "b"], n_boot=20)["targets"]["age"]
    assert unknown_test["skipped"] == "no test row with a known value" and unknown_test["n_rows"] == 0
    with pytest.raises(ValueError, match="too_few_rows"):
        regression_probe(["age"], x[:2], y[:2], x, y, ["a"] * 30)
    with pytest.raises(ValueError, match="single patient"):
        regression_probe(["age"], x, y, x, y, ["a"] * 30, train_patients=["a"] * 30)
    with pytest.raises(ValueError, match="NaN or infinite"):
        regression_probe(["age"], np.full_like(x, np.nan), y, x, y, ["a"] * 30)
    with pytest.raises(ValueError, match="infinite"):
        regression_probe(["age"], x, np.full(30, np.inf), x, y, ["a"] * 30)
    with pytest.raises(ValueError, match="ridge_alpha must be > 0"):
        regression_probe(["age"], x, y, x, y, ["a"] * 30, ridge_alpha=0.0)
    with pytest.raises(ValueError, match="no continuous target"):
        regression_probe([], x, y, x, y, ["a"] * 30)
