"""Manifest hygiene (issue 14): patient ids that differ only by case or spacing, paths that leave the manifest's
folder, and one file referenced under two patient ids."""

from __future__ import annotations

import logging

import pandas as pd

import medclip
from medclip.data import SplitConfig, read_manifest
from medclip.data.dataset import ManifestDataset
from medclip.data.prepare import flag_files_of_several_patients


def write(folder, table: pd.DataFrame):
    path = folder / "manifest.csv"
    table.to_csv(path, index=False)
    return path


def test_case_variant_ids_warn_and_optionally_merge(tmp_path, caplog):
    table = pd.DataFrame(
        {"patient_id": ["AB-12", "ab-12", " Ab-12 ", "CD 7", "cd  7", "EF9"], "report": list("uvwxyz")}
    )
    path = write(tmp_path, table)
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        separate = read_manifest(path, ["report"])
    assert len({row.patient for row in separate.rows}) == 6  # every spelling its own patient (edges stripped)
    assert "2 patient ids also appear with other letter case or spacing" in caplog.text
    assert "ab-12" not in caplog.text.lower().replace("patient ids", "")  # counts only, never an id
    merged = read_manifest(path, ["report"], normalize_patient_ids=True)
    assert len({row.patient for row in merged.rows}) == 3
    split = SplitConfig(val_fraction=0.3, test_fraction=0.3, split_seed=1).assign(merged)
    by_patient = {}
    for row in merged.rows:
        by_patient.setdefault(row.patient, set()).add(split[row.row_number])
    assert all(len(splits) == 1 for splits in by_patient.values())  # a patient's rows never straddle splits


def test_confined_paths_refuse_cells_that_leave_the_manifest_folder(tmp_path):
    inside = tmp_path / "project"
    inside.mkdir()
    (inside / "a.txt").write_text("Normal chest.")
    (tmp_path / "outside.txt").write_text("Someone else's report.")
    (inside / "link.txt").symlink_to(tmp_path / "outside.txt")
    table = pd.DataFrame({"patient_id": ["p1", "p2", "p3"], "report": ["a.txt", "../outside.txt", "link.txt"]})
    manifest = read_manifest(write(inside, table), ["report"])
    report = medclip.get_modality("report")
    open_dataset = ManifestDataset(manifest, {"report": report}, transforms={})
    assert len(open_dataset) == 3
    confined = ManifestDataset(manifest, {"report": report}, transforms={}, confine_paths=True)
    assert confined.row_numbers() == [1]
    assert confined.summary.counts() == {"outside_root": 2}


def test_one_file_under_two_patient_ids_is_flagged(tmp_path, caplog):
    (tmp_path / "scan.txt").write_text("Small left effusion.")
    (tmp_path / "other.txt").write_text("Normal.")
    table = pd.DataFrame({"patient_id": ["p1", "p2", "p3"], "report": ["scan.txt", "./scan.txt", "other.txt"]})
    manifest = read_manifest(write(tmp_path, table), ["report"])
    dataset = ManifestDataset(manifest, {"report": medclip.get_modality("report")}, transforms={})
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        assert flag_files_of_several_patients([dataset]) == 1
    assert "referenced by rows of 2 different patients (rows 1, 2)" in caplog.text and "scan" not in caplog.text


def test_cells_of_one_h5ad_file_may_belong_to_many_patients(pbmc_manifest, caplog):
    """An .h5ad holds many donors' cells: rows naming different cells of it are not a mix-up; one cell named under
    two patient ids is."""
    manifest = read_manifest(pbmc_manifest, ["expression"])
    dataset = ManifestDataset(manifest, {"expression": medclip.get_modality("expression")}, transforms={})
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        assert flag_files_of_several_patients([dataset]) == 0
    assert "different patients" not in caplog.text
    table = pd.read_csv(pbmc_manifest)
    first = table.iloc[0]
    twin = first.copy()
    twin["patient_id"] = "someone-else"
    copied = pbmc_manifest.parent / "twin.csv"
    pd.concat([table.iloc[:5], twin.to_frame().T]).to_csv(copied, index=False)
    twinned = ManifestDataset(
        read_manifest(copied, ["expression"]), {"expression": medclip.get_modality("expression")}, transforms={}
    )
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        assert flag_files_of_several_patients([twinned]) == 1


def test_identical_inline_reports_of_two_patients_are_not_a_shared_file(tmp_path, caplog, monkeypatch):
    """Templated reports ("Normal chest.") repeat across patients: inline text is not a file, so it is neither
    flagged as one file under two patient ids nor refused as a path leaving the manifest's folder."""
    table = pd.DataFrame({"patient_id": ["p1", "p2"], "report": ["Normal chest.", "Normal chest."]})
    path = write(tmp_path, table)
    monkeypatch.chdir(tmp_path.parent)  # relative "paths" would resolve outside the manifest's folder from here
    manifest = read_manifest(path, ["report"])
    report = {"report": medclip.get_modality("report")}
    dataset = ManifestDataset(manifest, report, transforms={})
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        assert flag_files_of_several_patients([dataset]) == 0
    assert "different patients" not in caplog.text
    confined = ManifestDataset(manifest, report, transforms={}, confine_paths=True)
    assert confined.row_numbers() == [1, 2]
