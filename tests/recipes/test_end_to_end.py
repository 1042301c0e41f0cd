"""The four clinical recipes end to end on a tiny model trained on the real pbmc68k_reduced manifest.

One model is trained per module (the quickstart's data through ``small_experiment``'s settings) and every recipe runs
on its checkpoint + manifest, through ``medclip.cli.main`` or the recipe's ``main``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from medclip import config
from medclip.cli import main as cli
from medclip.eval.hygiene import SeenPatientsError
from medclip.eval.index import build_index, load_index
from recipes.pretrain import Config as PretrainConfig
from recipes.pretrain import pretrain
from tests.conftest import SMALL_EXPERIMENT


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(pbmc_manifest, tmp_path_factory) -> dict:
    """A tiny expression <-> report model (small_experiment's settings) trained for 40 steps on pbmc68k_reduced."""
    out = tmp_path_factory.mktemp("trained")
    overrides = [
        *SMALL_EXPERIMENT,
        f"data.manifest={pbmc_manifest}",
        f"out={out}",
        "train.steps=40",
        "data.val_fraction=0.2",
        "data.test_fraction=0.2",
    ]
    experiment = config.build(
        PretrainConfig, config.apply_overrides({"modalities": {"expression": {}, "report": {}}}, overrides)
    )
    result = pretrain(experiment)
    return {"checkpoint": result.checkpoint, "manifest": pbmc_manifest, "splits": result.splits}


def common(trained: dict) -> list[str]:
    return [f"checkpoint={trained['checkpoint']}", f"manifest={trained['manifest']}", "progress=false", "device=cpu"]


def assert_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0.01, path.name


def assert_provenance(metrics: dict, trained: dict) -> None:
    provenance = metrics["provenance"]
    assert provenance["checkpoint_sha256"] == sha256(Path(trained["checkpoint"]) / "model.safetensors")
    assert provenance["manifest_sha256"] == sha256(trained["manifest"])
    assert len(provenance["pseudonym_key_fingerprint"]) == 12


def assert_no_identifiers(folder: Path) -> None:
    """Raw manifest ids (cell-0001, ...) never reach an output; only pseudonyms do."""
    for path in folder.rglob("*"):
        if path.suffix in (".json", ".md", ".html"):
            assert "cell-0" not in path.read_text(), path.name


def test_zero_shot_multiclass_from_the_cli(trained, tmp_path):
    out = tmp_path / "zs"
    assert cli(["zero-shot", "--out", str(out), *common(trained), "n_bootstrap=100"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert_provenance(metrics, trained)
    assert metrics["provenance"]["prompt_set"]["name"] == "pbmc68k_cell_types"
    assert metrics["provenance"]["seed"] == 0 and metrics["provenance"]["bootstrap"]["unit"] == "patient"
    assert metrics["hygiene"]["checked"] and metrics["hygiene"]["seen_patients"] == 0
    assert metrics["data"]["splits"]["test"]["rows"] == len(trained["splits"]["test"])
    result, multiclass = metrics["zero_shot"], metrics["multiclass"]
    assert len(result["findings"]) == 10
    macro = result["macro"]["auroc"]
    assert macro["ci_low"] <= macro["value"] <= macro["ci_high"] and macro["value"] > 0.55
    assert multiclass["accuracy"]["value"] > multiclass["majority_class_accuracy"]
    for finding in result["findings"].values():
        assert finding["threshold_source"].startswith("validation:") or finding["threshold_source"].startswith("fixed")
    for name in ("roc.png", "reliability.png"):
        assert_png(out / name)
    report = (out / "report.html").read_text()
    assert "95% CI" in report and "roc.png" in report and metrics["provenance"]["checkpoint_sha256"] in report
    assert (out / "report.md").read_text().startswith("# Zero-shot diagnosis")
    assert_no_identifiers(out)


def test_zero_shot_binary_with_sites(trained, tmp_path):
    from recipes.zero_shot import Config, main

    table = pd.read_csv(trained["manifest"], dtype=str, keep_default_na=False)
    table["site"] = ["north" if i % 2 else "south" for i in range(len(table))]
    manifest = trained["manifest"].parent / "manifest_with_sites.csv"
    table.to_csv(manifest, index=False)
    findings = ["CD19+ B", "CD14+ Monocyte", "Dendritic"]
    cfg = Config(
        checkpoint=str(trained["checkpoint"]),
        manifest=str(manifest),
        out=str(tmp_path / "zsb"),
        mode="binary",
        findings=findings,
        n_bootstrap=50,
        min_site_rows=10,
        progress=False,
        device="cpu",
        report_formats=["markdown"],
    )
    summary = main(cfg)
    metrics = json.loads((tmp_path / "zsb" / "metrics.json").read_text())
    assert list(metrics["zero_shot"]["findings"]) == findings and metrics["multiclass"] is None
    assert set(metrics["zero_shot"]["by_site"]) == {"north", "south"}
    assert metrics["provenance"]["manifest_sha256"] == sha256(manifest)
    assert 0.0 <= summary["macro_auroc"] <= 1.0 and "macro_auroc_ci_low" in summary
    assert "By site" in (tmp_path / "zsb" / "report.md").read_text()


def test_zero_shot_refuses_patients_seen_in_pretraining(trained, tmp_path):
    from recipes.zero_shot import Config, main

    cfg = Config(
        checkpoint=str(trained["checkpoint"]),
        manifest=str(trained["manifest"]),
        out=str(tmp_path / "seen"),
        split="train",
        threshold_split="none",
        n_bootstrap=20,
        progress=False,
        device="cpu",
    )
    with pytest.raises(SeenPatientsError, match="seen_patients"):
        main(cfg)
    cfg.allow_seen_patients = True
    main(cfg)
    metrics = json.loads((tmp_path / "seen" / "metrics.json").read_text())
    assert metrics["hygiene"]["seen_patients"] == len(trained["splits"]["train"])  # one cell = one patient
    assert all(f["threshold_source"].startswith("fixed") for f in metrics["zero_shot"]["findings"].values())


def test_retrieval_with_faiss_index_and_free_text_query(trained, tmp_path):
    out = tmp_path / "rt"
    arguments = [
        "retrieve",
        "--out",
        str(out),
        *common(trained),
        "n_bootstrap=50",
        "index=faiss",
        "top_k=7",
        "query_text=a CD19+ B cell.",
    ]
    assert cli(arguments) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert_provenance(metrics, trained)
    n_pairs = metrics["data"]["evaluated_pairs"]
    assert n_pairs == len(trained["splits"]["test"])
    for direction in ("report->expression", "expression->report"):
        recall = metrics["recall"][direction]
        assert recall["R@1"]["value"] <= recall["R@5"]["value"] <= recall["R@10"]["value"] <= recall["R@50"]["value"]
        assert recall["R@50"]["value"] > 50 / n_pairs  # better than chance
        assert 1 <= recall["median_rank"]["value"] <= n_pairs
        label_aware = metrics["label_aware"][direction]
        assert 0 < label_aware["mAP"]["value"] <= 1 and 0 < label_aware["nDCG@10"]["value"] <= 1
    hits = json.loads((out / "query_results.json").read_text())["hits"]
    assert len(hits) == 7 and all(hit["study"].startswith("s-") and hit["patient"].startswith("p-") for hit in hits)
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    index = load_index(out / "index")
    assert index.kind == "faiss" and len(index) == n_pairs
    assert index.metadata["checkpoint_sha256"] == metrics["provenance"]["checkpoint_sha256"]
    assert "a CD19+ B cell" not in (out / "metrics.json").read_text()  # free text is stored as a hash only
    assert_png(out / "examples.png")
    assert_no_identifiers(out)


def test_probe_few_shot_and_fine_tuning(trained, tmp_path):
    from recipes.linear_probe import Config, main

    cfg = Config(
        checkpoint=str(trained["checkpoint"]),
        manifest=str(trained["manifest"]),
        out=str(tmp_path / "pr"),
        fractions=[0.05, 1.0],
        seeds=[0, 1],
        C=1.0,
        n_bootstrap=30,
        finetune=True,
        finetune_steps=4,
        finetune_batch_size=16,
        finetune_lr=3e-3,
        progress=False,
        device="cpu",
        report_formats=["html"],
    )
    summary = main(cfg)
    metrics = json.loads((tmp_path / "pr" / "metrics.json").read_text())
    assert_provenance(metrics, trained)
    assert len(metrics["runs"]) == 3  # two seeds at 5%, one fit at 100% (same patients for every seed)
    few_shot = metrics["few_shot"]
    assert few_shot["0.05"]["n_train_patients_mean"] < few_shot["1"]["n_train_patients_mean"]
    assert few_shot["1"]["macro_auroc_mean"] > 0.7
    full = next(run for run in metrics["runs"] if run["fraction"] == 1.0 and run["seed"] == 0)
    assert full["n_train_patients"] == len(trained["splits"]["train"])
    assert full["multiclass"]["accuracy"]["value"] > full["multiclass"]["majority_class_accuracy"]
    assert metrics["finetune"]["training"]["steps"] == 4 and "auroc" in metrics["finetune"]["findings"]["macro"]
    assert summary["macro_auroc"] == pytest.approx(full["findings"]["macro"]["auroc"]["value"])
    for name in ("few_shot.png", "roc.png", "reliability.png"):
        assert_png(tmp_path / "pr" / name)


def test_embed_with_thread_workers_writes_the_same_vectors(trained, tmp_path):
    base = [*common(trained), "split=test", "batch_size=16"]
    assert cli(["embed", "--out", str(tmp_path / "main"), *base]) == 0
    assert cli(["embed", "--out", str(tmp_path / "threads"), *base, "num_workers=2", "worker_kind=thread"]) == 0
    main_process = pd.read_parquet(tmp_path / "main" / "embeddings").sort_values(["row", "modality"])
    threads = pd.read_parquet(tmp_path / "threads" / "embeddings").sort_values(["row", "modality"])
    assert list(main_process["row"]) == list(threads["row"]) and len(threads) == 2 * len(trained["splits"]["test"])
    np.testing.assert_allclose(np.stack(threads["vector"]), np.stack(main_process["vector"]), atol=1e-6)
    assert cli(["embed", "--out", str(tmp_path / "bad"), *base, "worker_kind=fibre"]) == 2  # named, refused


def test_embed_writes_parquet_and_resumes(trained, tmp_path):
    out = tmp_path / "em"
    arguments = ["embed", "--out", str(out), *common(trained), "split=test", "rows_per_file=40", "batch_size=20"]
    assert cli(arguments) == 0
    parts = sorted((out / "embeddings").glob("part-*.parquet"))
    n_test = len(trained["splits"]["test"])
    assert len(parts) == -(-n_test // 40)
    table = pd.read_parquet(out / "embeddings")
    assert list(table.columns) == ["study", "patient", "modality", "row", "split", "vector"]
    assert len(table) == 2 * n_test and set(table["modality"]) == {"expression", "report"}
    assert set(table["row"]) == set(trained["splits"]["test"]) and set(table["split"]) == {"test"}
    vectors = np.stack(table["vector"].to_numpy())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    # An interrupted run: one part is lost; running the same command again embeds only its rows.
    lost_rows = set(pd.read_parquet(parts[1])["row"])
    parts[1].unlink()
    assert cli(arguments) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows_written_now"] == len(lost_rows) and metrics["rows_already_written"] == n_test - len(lost_rows)
    resumed = pd.read_parquet(out / "embeddings")
    assert len(resumed) == 2 * n_test and not resumed.duplicated(["row", "modality"]).any()
    assert_provenance(metrics, trained)

    # FAISS and exact search agree on the real embeddings too.
    expression = resumed[resumed["modality"] == "expression"]
    report = resumed[resumed["modality"] == "report"]
    gallery = np.stack(expression["vector"].to_numpy())
    queries = np.stack(report["vector"].to_numpy())[:20]
    ids = list(expression["study"])
    exact = build_index("exact", gallery, ids, list(expression["patient"])).search(queries, 5)
    faiss = build_index("faiss", gallery, ids, list(expression["patient"])).search(queries, 5)
    np.testing.assert_allclose(exact[0], faiss[0], atol=1e-5)
    distinct = np.all(np.diff(exact[0], axis=1) < -1e-6, axis=1)  # rows without near-ties must agree exactly
    np.testing.assert_array_equal(exact[1][distinct], faiss[1][distinct])

    # Resuming with other modalities would mix two tables: refused with a clear error.
    assert cli([*arguments, "modalities=[expression]"]) == 2
