"""Validation during pretraining (issue 13): metrics on held-out patients beside the training patients' and chance,
the best checkpoint, early stopping, a split large enough to mean something, and no effect on training itself."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import medclip
from medclip.data import read_manifest
from medclip.eval.validation import pair_recalls
from recipes.pretrain import main, pretrain


def test_pair_recalls_match_hand_counts():
    import numpy as np

    a = np.eye(4, dtype=np.float32)
    b = np.eye(4, dtype=np.float32)[[0, 1, 3, 2]]  # rows 2 and 3 swapped: only 2 of 4 retrieve their pair first
    present = np.array([True, True, True, True])
    metrics = pair_recalls({"x": a, "y": b}, {"x": present, "y": present}, "val", ks=(1, 2))
    assert metrics["val/x->y/R@1"] == 0.5 and metrics["val/y->x/R@1"] == 0.5
    assert metrics["val/x-y/chance/R@1"] == 0.25 and metrics["val/x-y/chance/R@2"] == 0.5
    assert metrics["val/mean_R@1"] == 0.5 and metrics["val/x-y/rows"] == 4


def test_validation_is_logged_with_chance_and_the_best_model_is_saved(small_experiment, tmp_path):
    out = tmp_path / "run"
    main(small_experiment("train.steps=6", "train.val_every=3", out=out))
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val/mean_R@1" in r]
    assert [r["step"] for r in validations] == [3, 6]
    first = validations[0]
    assert {"val/loss", "train/mean_R@1", "val/expression->report/R@1", "val/report->expression/R@5"} <= set(first)
    assert 0 < first["val/expression-report/chance/R@1"] < 1
    assert any(key.startswith("val/health/") for key in first)
    # the manifest's label:<cell type> columns: a probe per tower and finding, scored on the validation patients
    probes = [key for key in first if key.startswith("val/probe/expression/") and key.endswith("/auroc")]
    assert len(probes) >= 3 and all(0.0 <= first[key] <= 1.0 for key in probes)
    assert 0.0 <= first["val/probe/report/macro_auroc"] <= 1.0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["best"]["metric"] == "val/mean_R@1" and summary["best"]["step"] in (3, 6)
    assert "validation patients" in summary["memorisation"]
    best = medclip.load_model(out / "best")  # a complete model, loadable like any checkpoint
    assert best.card.training["best"]["step"] == summary["best"]["step"]
    from PIL import Image

    with Image.open(out / "training_curve.png") as curve:  # loss, retrieval, and the label probes' panel
        assert curve.size[0] == 1800


def test_early_stopping_ends_a_run_that_stopped_improving(small_experiment, tmp_path):
    # with a zero learning rate the model never changes, so the metric never improves after the first validation
    result = pretrain(
        small_experiment(
            "train.steps=40", "train.val_every=2", "train.early_stopping_patience=2", "train.lr=0", out=tmp_path / "run"
        )  # fmt: skip
    )
    assert result.stopped_early and result.best["step"] == 2
    assert json.loads((result.checkpoint / "trainer_state.json").read_text())["step"] == 6


def test_validating_does_not_change_what_training_draws(small_experiment, tmp_path):
    with_validation = pretrain(small_experiment("train.steps=4", "train.val_every=1", out=tmp_path / "a"))
    without = pretrain(small_experiment("train.steps=4", "train.val_every=0", out=tmp_path / "b"))
    a = load_file(str(with_validation.checkpoint / "model.safetensors"))
    b = load_file(str(without.checkpoint / "model.safetensors"))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_the_validation_split_is_raised_to_a_minimum_of_patients(tmp_path, caplog):
    import pandas as pd

    from medclip.data import SplitConfig

    table = pd.DataFrame({"patient_id": [f"p{i}" for i in range(200)], "report": ["x"] * 200})
    table.to_csv(tmp_path / "m.csv", index=False)
    manifest = read_manifest(tmp_path / "m.csv", ["report"])
    chosen, note = SplitConfig(val_fraction=0.02).with_validation_patients(manifest, 20)
    assert chosen.val_fraction > 0.02 and "val_fraction raised" in note
    splits = chosen.assign(manifest)
    assert sum(split == "val" for split in splits.values()) >= 20
    too_few, warning = SplitConfig(val_fraction=0.02).with_validation_patients(manifest, 100)
    assert too_few.val_fraction == pytest.approx(0.3) and "fewer than min_val_patients=100" in warning


def test_the_best_checkpoint_records_its_training_patients_for_held_out_evaluation(small_experiment, tmp_path):
    """Evaluation recipes refuse a checkpoint that does not say whom it trained on (no_provenance); best/ used to."""
    from medclip.eval.hygiene import check_unseen_patients, read_data_provenance

    out = tmp_path / "run"
    main(small_experiment("train.steps=2", "train.val_every=2", out=out))
    final, best = read_data_provenance(out / "checkpoint"), read_data_provenance(out / "best")
    assert best is not None and best == final
    key = best["pseudonym_key_fingerprint"]
    record = check_unseen_patients(out / "best", {"a-patient-never-seen"}, key, allow_seen_patients=False)
    assert record["checked"] and record["seen_patients"] == 0


def test_a_label_probe_can_pick_the_best_checkpoint_and_a_missing_metric_is_named(small_experiment, tmp_path, capsys):
    chosen = pretrain(
        small_experiment(
            "train.steps=4",
            "train.val_every=2",
            "train.best_metric=val/probe/expression/macro_auroc",
            out=tmp_path / "probe",
        )  # fmt: skip
    )
    assert chosen.best["metric"] == "val/probe/expression/macro_auroc" and (tmp_path / "probe" / "best").is_dir()
    misspelt = pretrain(
        small_experiment(
            "train.steps=2",
            "train.val_every=1",
            "train.best_metric=val/probe/ct/macro_auroc",
            out=tmp_path / "misspelt",
        )  # fmt: skip
    )
    assert not misspelt.best and not (tmp_path / "misspelt" / "best").exists()
    printed = capsys.readouterr().out
    assert printed.count("train.best_metric 'val/probe/ct/macro_auroc' is not among") == 1
    assert "val/probe/expression/macro_auroc" in printed


def test_the_run_summary_names_a_tower_whose_label_probe_is_near_chance():
    from recipes.pretrain import memorisation_note

    validation = {
        "train/mean_R@1": 0.9, "val/mean_R@1": 0.04, "val/ct-report/chance/R@1": 0.042,
        "val/probe/ct/macro_auroc": 0.52, "val/probe/report/macro_auroc": 0.91, "val/probe/ct/nodule/auroc": 0.5,
    }  # fmt: skip
    note = memorisation_note(validation)
    assert "(memorisation)" in note
    assert "label probes on validation patients (macro AUROC): ct 0.52, report 0.91 (ct near chance" in note
    healthy = memorisation_note({**validation, "val/probe/ct/macro_auroc": 0.8})
    assert healthy.endswith("ct 0.80, report 0.91")
    assert "label probes" not in memorisation_note({k: v for k, v in validation.items() if "probe" not in k})
