"""Embedding health, gap removal, same-modality retrieval and regression probes in the recipes, from the CLI.

A tiny model trained on scanpy's real pbmc68k_reduced (``tiny_checkpoint``) and a copy of its manifest with a
``site`` column and ``target:`` columns: ``pc1``, the cell's first principal component of expression (a probe can
learn it from an expression embedding), and ``shuffled``, the same values permuted across cells (nothing to learn).
Every number in metrics.json is checked against the library functions run here on independently embedded rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

import medclip
from medclip.cli import main as cli
from medclip.config import ConfigError
from medclip.embedding import LoaderOptions, embed_split
from medclip.eval.diagnostics import embedding_health, modality_gap
from medclip.eval.evaluation_data import open_evaluation_data
from medclip.eval.gap import modality_centroid, remove_modality_gap
from medclip.eval.ranking import finding_relevance
from medclip.eval.regression import regression_probe
from medclip.eval.retrieval import recall_at_k, same_modality_retrieval
from medclip.eval.zero_shot_classifier import ZeroShotClassifier
from tests.medclip.conftest import tiny_checkpoint  # noqa: F401  (the fixture, shared with tests/medclip)

pytestmark = pytest.mark.slow  # each test embeds a few hundred real cells through the CLI


@pytest.fixture(scope="module")
def manifests(pbmc_manifest, tmp_path_factory) -> dict[str, Path]:
    """Copies of the pbmc manifest: with sites and targets (and labels), and with targets only (no label:)."""
    import scanpy as sc

    table = pd.read_csv(pbmc_manifest, dtype=str, keep_default_na=False)
    first_component = sc.read_h5ad(pbmc_manifest.parent / "pbmc68k_reduced.h5ad").obsm["X_pca"][:, 0]
    table["site"] = ["north" if i % 2 else "south" for i in range(len(table))]
    table["target:pc1"] = [f"{value:.6f}" for value in first_component]
    table["target:shuffled"] = [f"{value:.6f}" for value in np.random.default_rng(0).permutation(first_component)]
    folder = pbmc_manifest.parent  # relative paths in the manifest resolve against its folder
    paths = {"full": folder / "manifest_sites_targets.csv", "targets": folder / "manifest_targets_only.csv"}
    table.to_csv(paths["full"], index=False)
    table.drop(columns=[c for c in table if c.startswith("label:")]).to_csv(paths["targets"], index=False)
    bare = folder / "manifest_without_labels_or_targets.csv"
    table[["patient_id", "expression", "report"]].to_csv(bare, index=False)
    paths["bare"] = bare
    return paths


def arguments(command: str, out: Path, checkpoint: Path, manifest: Path, *extra: str) -> list[str]:
    common = [f"checkpoint={checkpoint}", f"manifest={manifest}", "progress=false", "device=cpu"]
    return [command, "--out", str(out), *common, *extra]


def embedded(checkpoint: Path, manifest: Path, modalities: list[str], split: str | None):
    """The rows of ``split`` embedded here, independently of the recipe run."""
    model = medclip.load_model(checkpoint, "cpu")
    data = open_evaluation_data(model, manifest, modalities)
    options = LoaderOptions(batch_size=64, progress=False)
    return model, embed_split(model, data.dataset(model, modalities, split), modalities, options)[0]


def assert_health_matches(block: dict, rows, modalities: list[str]) -> None:
    """metrics.json's diagnostics block equals embedding_health on the same rows."""
    expected = embedding_health(
        {name: rows.embeddings[name] for name in modalities},
        masks={name: rows.present[name] for name in modalities},
        sites=rows.sites,
        patients=list(rows.patients),
    )
    for name in modalities:
        for key in ("uniformity", "effective_rank", "centroid_norm"):
            assert block["modalities"][name][key] == pytest.approx(expected["modalities"][name][key], abs=1e-5)
        site_probe = block["sites"][name]["site_probe"]
        assert site_probe["balanced_accuracy"] == pytest.approx(
            expected["sites"][name]["site_probe"]["balanced_accuracy"]
        )
        assert site_probe["chance_balanced_accuracy"] == 0.5
    for pair, entry in expected["pairs"].items():
        assert block["pairs"][pair]["gap"] == pytest.approx(entry["gap"], abs=1e-5)
        assert block["pairs"][pair]["alignment"] == pytest.approx(entry["alignment"], abs=1e-5)


def assert_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0.01, path.name


def test_probe_regression_on_a_manifest_without_labels(tiny_checkpoint, manifests, tmp_path):  # noqa: F811
    out = tmp_path / "probe"
    assert cli(arguments("probe", out, tiny_checkpoint, manifests["targets"], "n_bootstrap=200")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["runs"] == [] and metrics["few_shot"] == {}  # no label: column, no classification probe
    targets = metrics["regression"]["targets"]
    assert set(targets) == {"pc1", "shuffled"}

    _, train = embedded(tiny_checkpoint, manifests["targets"], ["expression"], "train")
    _, val = embedded(tiny_checkpoint, manifests["targets"], ["expression"], "val")
    _, test = embedded(tiny_checkpoint, manifests["targets"], ["expression"], "test")
    expected = regression_probe(
        ["pc1", "shuffled"],
        train.embeddings["expression"],
        train.targets,
        test.embeddings["expression"],
        test.targets,
        list(test.patients),
        train_patients=list(train.patients),
        val_x=val.embeddings["expression"],
        val_y=val.targets,
        n_boot=200,
    )["targets"]
    for name in ("pc1", "shuffled"):
        assert targets[name]["ridge_alpha"] == expected[name]["ridge_alpha"]
        assert targets[name]["alpha_source"] == "validation" and targets[name]["n_rows"] == len(test)
        for metric in ("r2", "mae", "pearson_r"):
            for key in ("value", "ci_low", "ci_high"):
                assert targets[name][metric][key] == pytest.approx(expected[name][metric][key], abs=1e-4)
    # the first principal component of expression is readable from the expression embedding; a shuffle is not
    assert targets["pc1"]["r2"]["ci_low"] > 0.3
    assert targets["pc1"]["mae"]["value"] < targets["pc1"]["mean_baseline"]["mae"]
    assert abs(targets["shuffled"]["r2"]["value"]) < 0.1
    assert targets["shuffled"]["ridge_alpha"] > targets["pc1"]["ridge_alpha"]

    assert_health_matches(metrics["diagnostics"], test, ["expression"])
    assert metrics["diagnostics"]["split"] == "test" and metrics["diagnostics"]["pairs"] == {}
    assert_png(out / "regression.png")
    assert_png(out / "embedding_map.png")
    report = (out / "report.md").read_text()
    assert "Regression probes" in report and "regression.png" in report and "Embedding health" in report


def test_probe_refuses_a_manifest_without_labels_or_targets(tiny_checkpoint, manifests, tmp_path):  # noqa: F811
    from recipes.linear_probe import Config, main

    cfg = Config(checkpoint=str(tiny_checkpoint), manifest=str(manifests["bare"]), out=str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match="label:<finding> or target:<name>"):
        main(cfg)
    cfg.manifest, cfg.targets = str(manifests["targets"]), ["pc 1"]
    with pytest.raises(ConfigError, match="did you mean 'pc1'"):
        main(cfg)


def test_retrieval_gap_removal_same_modality_and_health(tiny_checkpoint, manifests, tmp_path):  # noqa: F811
    out = tmp_path / "retrieve"
    extra = ["n_bootstrap=50", "remove_gap=true", "gap_centroids=val", "same_modality=[expression]", "ks=[1,5,10]"]
    assert cli(arguments("retrieve", out, tiny_checkpoint, manifests["full"], *extra)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    model, test = embedded(tiny_checkpoint, manifests["full"], ["report", "expression"], "test")
    _, val = embedded(tiny_checkpoint, manifests["full"], ["report", "expression"], "val")
    assert metrics["data"]["evaluated_pairs"] == len(test)  # one cell per patient: nothing de-duplicated

    # the plain and the gap-removed numbers, both directions, side by side
    gap = metrics["gap_removed"]
    assert gap["centroids"] == "val" and not gap["transductive"] and gap["rows"]["expression"] == len(val)
    report_centroid = modality_centroid(val.embeddings["report"])
    expression_centroid = modality_centroid(val.embeddings["expression"])
    reports = remove_modality_gap(test.embeddings["report"], report_centroid)
    cells = remove_modality_gap(test.embeddings["expression"], expression_centroid)
    for direction, (query, target, plain_query, plain_target) in {
        "report->expression": (reports, cells, test.embeddings["report"], test.embeddings["expression"]),
        "expression->report": (cells, reports, test.embeddings["expression"], test.embeddings["report"]),
    }.items():
        removed, plain = recall_at_k(query, target, (1, 5, 10)), recall_at_k(plain_query, plain_target, (1, 5, 10))
        for name in ("R@1", "R@5", "R@10"):
            assert gap["recall"][direction][name]["value"] == pytest.approx(removed[name], abs=1e-6)
            assert metrics["recall"][direction][name]["value"] == pytest.approx(plain[name], abs=1e-6)
        assert "mAP" in gap["label_aware"][direction]

    # scan -> scan: each cell against every other cell, relevant = same cell type, a patient's other rows excluded
    expected = same_modality_retrieval(
        test.embeddings["expression"],
        test.patients,
        finding_relevance(test.labels, test.labels)[0],
        ks=(1, 5, 10),
    )
    same = metrics["same_modality"]["expression"]
    assert same["same_patient"] == "exclude" and same["n_scored"] == expected["n_scored"]
    for name in ("R@1", "R@5", "mAP", "median_rank"):
        entry = same[name]
        assert entry["value"] == pytest.approx(expected[name], abs=1e-6)
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]

    assert_health_matches(metrics["diagnostics"], test, ["report", "expression"])
    assert metrics["diagnostics"]["pairs"]["report-expression"]["n_paired"] == len(test)
    assert_png(out / "embedding_map.png")
    report = (out / "report.md").read_text()
    for heading in ("Retrieval with the modality gap removed", "Same-modality retrieval", "Embedding health"):
        assert heading in report
    # misspelt options are refused before anything is embedded
    assert (
        cli(arguments("retrieve", out, tiny_checkpoint, manifests["full"], "remove_gap=true", "gap_centroids=hold"))
        == 2
    )
    assert cli(arguments("retrieve", out, tiny_checkpoint, manifests["full"], "same_modality=[ct]")) == 2


def test_zero_shot_health_with_the_gap_to_the_prompts(tiny_checkpoint, manifests, tmp_path):  # noqa: F811
    out = tmp_path / "zero_shot"
    extra = ["n_bootstrap=20", "diagnostics_modalities=[report]"]  # the reports embedded too, for the paired gap
    assert cli(arguments("zero-shot", out, tiny_checkpoint, manifests["full"], *extra)) == 0
    block = json.loads((out / "metrics.json").read_text())["diagnostics"]
    model, test = embedded(tiny_checkpoint, manifests["full"], ["expression", "report"], "test")
    assert_health_matches(block, test, ["expression", "report"])
    assert block["pairs"]["expression-report"]["n_paired"] == len(test)
    prompts = ZeroShotClassifier(model, "pbmc68k_cell_types", mode="multiclass").positive
    assert block["references"]["prompts"]["n_rows"] == len(prompts)
    expected = modality_gap(test.embeddings["expression"], prompts).distance
    assert block["references"]["prompts"]["gap"]["expression"] == pytest.approx(expected, abs=1e-5)
    assert_png(out / "embedding_map.png")
    assert "gap to the 10 prompts embeddings" in (out / "report.md").read_text()

    # the switch: no block, no map, no section
    off = tmp_path / "zero_shot_off"
    assert (
        cli(arguments("zero-shot", off, tiny_checkpoint, manifests["full"], "n_bootstrap=20", "diagnostics=false")) == 0
    )
    assert json.loads((off / "metrics.json").read_text())["diagnostics"] is None
    assert not (off / "embedding_map.png").exists() and "Embedding health" not in (off / "report.md").read_text()


def test_embed_health_of_the_exported_table(tiny_checkpoint, manifests, tmp_path):  # noqa: F811
    out = tmp_path / "embed"
    assert cli(arguments("embed", out, tiny_checkpoint, manifests["full"], "split=test", "rows_per_file=32")) == 0
    block = json.loads((out / "metrics.json").read_text())["diagnostics"]
    table = pd.read_parquet(out / "embeddings").sort_values(["row", "modality"])
    cells, reports = (table[table["modality"] == name] for name in ("expression", "report"))
    assert list(cells["row"]) == list(reports["row"])
    site_of = pd.read_csv(manifests["full"], dtype=str, keep_default_na=False)["site"]
    expected = embedding_health(
        {"expression": np.stack(cells["vector"]), "report": np.stack(reports["vector"])},
        sites=[site_of[row - 1] for row in cells["row"]],  # manifest rows are 1-based
        patients=list(cells["patient"]),
    )
    assert block["n_rows"] == len(cells) and block["split"] == "test"
    assert block["pairs"]["expression-report"]["gap"] == pytest.approx(expected["pairs"]["expression-report"]["gap"])
    for name in ("expression", "report"):
        assert block["modalities"][name]["uniformity"] == pytest.approx(expected["modalities"][name]["uniformity"])
        assert block["sites"][name]["site_variance_fraction"] == pytest.approx(
            expected["sites"][name]["site_variance_fraction"]
        )
    assert_png(out / "embedding_map.png")
    assert "Embedding health" in (out / "report.html").read_text()
