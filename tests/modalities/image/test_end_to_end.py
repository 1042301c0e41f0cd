"""Chest X-ray <-> report end to end through the CLI, on a tiny real-format data set (DICOM CR/DX + PNG + reports).

Pretrain with the bundled ``cxr_report_pretrain.yaml`` (cache on, FILIP on the image's patch tokens next to CLIP),
then zero-shot with the bundled CheXpert prompt set, retrieval, probe and embedding export on its checkpoint. The
DICOM headers carry fake patient identifiers; none may reach any output.
"""

from __future__ import annotations

import json

import pandas as pd
import pydicom
import pytest

from medclip.cli import main as cli
from medclip.recipe_registry import RECIPES, recipe_config_path
from modalities.image.phantom import write_cxr_dataset

FINDINGS = "[Cardiomegaly,Pleural Effusion,Pneumothorax,Consolidation]"


@pytest.mark.slow
def test_cxr_report_pretraining_and_every_recipe_from_the_cli(tmp_path):
    manifest = write_cxr_dataset(tmp_path / "cxr", n=36, shape=(96, 96))
    config = recipe_config_path(RECIPES.get("pretrain"), "cxr_report_pretrain.yaml")
    run = tmp_path / "run"
    overrides = [
        f"data.manifest={manifest}",
        f"out={run}",
        f"modalities.image.cache_dir={tmp_path / 'cache'}",
        "modalities.image.size=[64,64]",
        "modalities.report.width=32",
        "modalities.report.layers=1",
        "modalities.report.max_tokens=64",
        "model.embed_dim=16",
        "loss.filip=0.5",
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "data.num_workers=1",
        "train.steps=6",
        "train.batch_size=6",
        "train.warmup_steps=1",
        "train.log_every=1",
        "train.progress=false",
    ]
    assert cli(["pretrain", "--config", str(config), *overrides]) == 0
    checkpoint = run / "checkpoint"
    assert (checkpoint / "model.safetensors").is_file()
    preprocess = json.loads((checkpoint / "preprocess.json").read_text())
    assert "image" in json.dumps(preprocess) and len(list((tmp_path / "cache").rglob("*.npy"))) >= 10  # train rows
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert any("filip_loss" in entry for entry in log)

    common = [f"checkpoint={checkpoint}", f"manifest={manifest}", "progress=false", "device=cpu", "n_bootstrap=20"]
    zero_shot = ["zero-shot", "--out", str(tmp_path / "zs"), *common, "query_modality=image", "prompts=chexpert_14"]
    assert cli([*zero_shot, "mode=binary", f"findings={FINDINGS}"]) == 0
    metrics = json.loads((tmp_path / "zs" / "metrics.json").read_text())
    assert metrics["provenance"]["prompt_set"]["name"] == "chexpert_14"
    assert set(metrics["zero_shot"]["findings"]) == {
        "Cardiomegaly",
        "Pleural Effusion",
        "Pneumothorax",
        "Consolidation",
    }

    retrieve = ["retrieve", "--out", str(tmp_path / "rt"), *common, "query_modality=report", "target_modality=image"]
    assert cli([*retrieve, "ks=[1,5]"]) == 0
    recall = json.loads((tmp_path / "rt" / "metrics.json").read_text())["recall"]["report->image"]
    assert 0.0 <= recall["R@1"]["value"] <= recall["R@5"]["value"] <= 1.0

    probe = ["probe", "--out", str(tmp_path / "pr"), *common, "modality=image", "mode=binary", f"findings={FINDINGS}"]
    assert cli([*probe, "fractions=[1.0]", "seeds=[0]", "C=1.0"]) == 0
    assert "runs" in json.loads((tmp_path / "pr" / "metrics.json").read_text())

    embed = ["embed", "--out", str(tmp_path / "em"), *common[:4], "modalities=[image]", "worker_kind=thread"]
    assert cli([*embed, "num_workers=2"]) == 0
    table = pd.read_parquet(tmp_path / "em" / "embeddings")
    assert len(table) == 36 and set(table["modality"]) == {"image"} and len(table["vector"].iloc[0]) == 16

    planted = [str(pydicom.dcmread(path).PatientName) for path in sorted((tmp_path / "cxr" / "images").glob("*.dcm"))]
    for folder in (run, tmp_path / "zs", tmp_path / "rt", tmp_path / "pr", tmp_path / "em", tmp_path / "cache"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".html", ".yaml"):
                text = path.read_text()
                assert not any(name in text for name in planted[:3]) and "CXR0000" not in text, path.name
