"""Tests of the data layer: manifest ingest, pseudonyms, patient-level splits, dataset, collate, skip summary.

Two small real plugins are defined here: "vector" reads ``.npy`` files with numpy, "note" holds inline text. They are
registered in a test-local ``Registry`` rather than the global one, so registry-wide tests elsewhere in the suite
(which build every registered modality's encoder) never pick them up.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from medclip.data import (
    Manifest,
    ManifestDataset,
    ManifestError,
    Pseudonymizer,
    PseudonymKeyError,
    SkipSummary,
    TooManySkippedError,
    assign_splits,
    check_no_patient_leakage,
    check_skip_fraction,
    collate_samples,
    file_sha256,
    is_empty_batch,
    read_manifest,
)
from medclip.registry import Registry
from medclip.types import Modality, ModalityConfig, ModalityError

TEST_MODALITIES: Registry[type[Modality]] = Registry("modality")


@dataclass
class VectorConfig(ModalityConfig):
    dim: int = 4


@TEST_MODALITIES.register("vector")
class VectorModality(Modality):
    """A fixed-length float vector stored as a ``.npy`` file (stands in for an ECG lead or an embedding file)."""

    name = "vector"
    config_class = VectorConfig

    def load(self, ref):
        array = np.load(ref, allow_pickle=False)  # a corrupt file raises here: the dataset must count "unreadable"
        if array.shape != (self.config.dim,):
            raise ModalityError("bad_shape", f"expected ({self.config.dim},), got {array.shape}")
        return {"vector": array.astype(np.float32), "vector_meta": {"dim": int(array.shape[0])}}

    def transforms(self, train):
        def to_tensor(sample):
            if "vector" in sample:
                sample["vector"] = torch.as_tensor(sample["vector"])
            return sample

        return to_tensor

    def collate(self, samples):
        mask = torch.tensor(["vector" in sample for sample in samples])
        rows = [
            torch.as_tensor(sample["vector"]) if "vector" in sample else torch.zeros(self.config.dim)
            for sample in samples
        ]
        return {"vector": torch.stack(rows), "vector_mask": mask}  # (B, dim), (B,)

    def synthetic(self, n, seed=0):
        generator = np.random.default_rng(seed)
        return [{"vector": generator.normal(size=self.config.dim).astype(np.float32)} for _ in range(n)]


@TEST_MODALITIES.register("note")
class NoteModality(Modality):
    """Inline free text in the manifest cell (like a short clinical note)."""

    name = "note"

    def resolve(self, value, root):
        return {"text": value}

    def load(self, ref):
        if not ref["text"].strip():
            raise ModalityError("empty_note", "the note holds only whitespace")
        return {"note": ref["text"]}

    def transforms(self, train):
        def normalise(sample):
            if "note" in sample:
                sample["note"] = " ".join(sample["note"].split())
            return sample

        return normalise

    def collate(self, samples):
        encoded = [sample.get("note", "").encode() for sample in samples]
        width = max(1, max(len(text) for text in encoded))
        codes = torch.zeros(len(samples), width, dtype=torch.uint8)  # (B, L) bytes, zero padding
        for index, text in enumerate(encoded):
            codes[index, : len(text)] = torch.tensor(list(text), dtype=torch.uint8)
        return {"note": codes, "note_mask": torch.tensor(["note" in sample for sample in samples])}

    def synthetic(self, n, seed=0):
        return [{"note": f"no acute finding {index}"} for index in range(n)]


KEY = b"0123456789abcdef0123456789abcdef"
RAW_IDENTIFIERS = ["MRN-SMITH-0001", "MRN-JONES-0002", "MRN-DOE-0003", "ACC-777001", "john_smith"]


def modality_instances() -> dict[str, Modality]:
    return {name: TEST_MODALITIES.get(name)() for name in ("vector", "note")}


@pytest.fixture
def manifest_table(tmp_path) -> pd.DataFrame:
    """Eight studies of three patients covering every per-row problem; files written with numpy into tmp_path."""
    (tmp_path / "scans").mkdir()
    for index in range(3):
        np.save(tmp_path / "scans" / f"good{index}.npy", np.arange(4, dtype=np.float32) + index)
    (tmp_path / "scans" / "corrupt.npy").write_bytes(b"this is not a numpy file")
    rows = [
        # patient_id, study_id, vector, note, label:effusion, label:edema, site, splt
        ("MRN-SMITH-0001", "ACC-777001", "scans/good0.npy", "small effusion", "1", "", "A", "x"),  # 1 good
        ("MRN-SMITH-0001", "", "scans/good1.npy", "", "no", "0", "A", ""),  # 2 good, note missing
        ("MRN-JONES-0002", "ACC-777003", "", "clear lungs", "false", "yes", "B", ""),  # 3 good, vector missing
        ("MRN-JONES-0002", "ACC-777004", "john_smith/scan.npy", "text", "", "", "B", ""),  # 4 missing_file
        ("MRN-DOE-0003", "ACC-777005", "scans/corrupt.npy", "text", "1", "1", "", ""),  # 5 unreadable
        ("MRN-DOE-0003", "ACC-777006", "scans/good2.npy", "   ", "0", "", "", ""),  # 6 empty_note
        ("MRN-DOE-0003", "ACC-777007", "scans/good2.npy", "text", "maybe", "", "", ""),  # 7 bad_label
        ("", "ACC-777008", "scans/good2.npy", "text", "1", "", "", ""),  # 8 missing_patient_id
        ("MRN-DOE-0003", "ACC-777009", "", "", "1", "", "", ""),  # 9 no_modality
    ]
    columns = ["patient_id", "study_id", "vector", "note", "label:effusion", "label:edema", "site", "splt"]
    return pd.DataFrame(rows, columns=columns)


@pytest.fixture
def csv_manifest(tmp_path, manifest_table):
    path = tmp_path / "manifest.csv"
    manifest_table.to_csv(path, index=False)
    return path


def read(path, **kwargs) -> Manifest:
    return read_manifest(path, ["vector", "note"], pseudonymizer=Pseudonymizer(KEY), **kwargs)


def assert_no_raw_identifiers(text: str) -> None:
    for raw in RAW_IDENTIFIERS:
        assert raw not in text, f"raw identifier {raw!r} leaked"


# --- pseudonyms ------------------------------------------------------------------------------------------------------
def test_pseudonyms_are_stable_keyed_and_namespaced():
    first, second = Pseudonymizer(KEY), Pseudonymizer(KEY)
    other = Pseudonymizer(b"another key of enough length!!")
    patient = first.pseudonym("MRN-SMITH-0001")
    assert patient == second.pseudonym("MRN-SMITH-0001", "patient")
    assert patient != other.pseudonym("MRN-SMITH-0001")
    assert patient != first.pseudonym("MRN-SMITH-0002")
    assert patient.startswith("p-") and len(patient) == 18 and set(patient[2:]) <= set("0123456789abcdef")
    assert first.pseudonym("7", "study").startswith("s-")
    assert first.pseudonym("7", "study")[2:] != first.pseudonym("7", "patient")[2:]
    assert "0123456789abcdef" not in repr(first)
    with pytest.raises(ValueError, match="unknown pseudonym kind"):
        first.pseudonym("7", "accession")


def test_key_from_environment_hex_text_and_too_short(monkeypatch):
    monkeypatch.setenv("MEDCLIP_PSEUDONYM_KEY", KEY.hex())
    assert Pseudonymizer.from_environment().pseudonym("a") == Pseudonymizer(KEY).pseudonym("a")
    monkeypatch.setenv("MEDCLIP_PSEUDONYM_KEY", "a long passphrase kept by the hospital")
    assert Pseudonymizer.from_environment().pseudonym("a") == Pseudonymizer(
        b"a long passphrase kept by the hospital"
    ).pseudonym("a")
    monkeypatch.setenv("MEDCLIP_PSEUDONYM_KEY", "short")
    with pytest.raises(PseudonymKeyError, match="at least 16"):
        Pseudonymizer.from_environment()


def test_default_key_file_is_created_once_with_mode_0600(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("MEDCLIP_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("MEDCLIP_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        created = Pseudonymizer.from_environment()
    key_file = tmp_path / ".config" / "medclip" / "pseudonym.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32
    assert "created a new pseudonym key" in caplog.text and str(key_file) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        again = Pseudonymizer.from_environment()
    assert "created" not in caplog.text  # the existing key is reused, not replaced
    assert again.pseudonym("MRN-1") == created.pseudonym("MRN-1")

    monkeypatch.setenv("MEDCLIP_PSEUDONYM_KEY_FILE", str(key_file))
    assert Pseudonymizer.from_environment().pseudonym("MRN-1") == created.pseudonym("MRN-1")
    monkeypatch.setenv("MEDCLIP_PSEUDONYM_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(PseudonymKeyError, match="does not exist"):
        Pseudonymizer.from_environment()


# --- manifest --------------------------------------------------------------------------------------------------------
def test_csv_manifest_is_pseudonymised_validated_and_leaks_nothing(csv_manifest, caplog):
    with caplog.at_level(logging.INFO, logger="medclip.data"):
        manifest = read(csv_manifest)
    assert manifest.total_rows == 9
    assert [row.row_number for row in manifest.rows] == [1, 2, 3, 4, 5, 6, 9]
    assert manifest.summary.counts() == {"bad_label": 1, "missing_patient_id": 1}
    assert {(record.row_number, record.column) for record in manifest.summary.records} == {
        (7, "label:effusion"),
        (8, "patient_id"),
    }
    assert manifest.summary.ignored_columns == {"splt": "split"}
    assert "'splt'" in caplog.text and "did you mean 'split'" in caplog.text
    assert manifest.label_names == ("effusion", "edema")
    assert manifest.root == csv_manifest.parent
    assert manifest.manifest_hash() == file_sha256(csv_manifest)

    first, second, third = manifest.rows[:3]
    pseudonymizer = Pseudonymizer(KEY)
    assert first.patient == second.patient == pseudonymizer.pseudonym("MRN-SMITH-0001")
    assert first.study == pseudonymizer.pseudonym("ACC-777001", "study")
    assert second.study == pseudonymizer.pseudonym("row-2", "study")  # blank study_id -> the row number
    assert first.cells == {"vector": "scans/good0.npy", "note": "small effusion"}
    assert second.cells["note"] is None and third.cells["vector"] is None
    np.testing.assert_array_equal(first.labels, [1.0, np.nan])
    np.testing.assert_array_equal(second.labels, [0.0, 0.0])
    np.testing.assert_array_equal(third.labels, [0.0, 1.0])
    assert first.site == "A" and manifest.rows[4].site is None

    identity_fields = repr([(row.row_number, row.patient, row.study, row.split, row.site) for row in manifest.rows])
    assert_no_raw_identifiers(identity_fields)
    assert_no_raw_identifiers(manifest.summary.render() + json.dumps(manifest.summary.to_dict()))
    assert_no_raw_identifiers(caplog.text)


def test_parquet_manifest_matches_csv_and_handles_typed_columns(tmp_path, manifest_table, csv_manifest):
    table = manifest_table.copy()
    table["label:effusion"] = table["label:effusion"].map({"1": 1.0, "no": 0.0, "false": 0.0, "0": 0.0, "": None})
    table.loc[6, "label:effusion"] = 7.0  # not 1 / 0 / blank: still a bad label in a typed column
    path = tmp_path / "manifest.parquet"
    table.to_parquet(path)
    from_parquet, from_csv = read(path), read(csv_manifest)
    assert from_parquet.manifest_hash() == file_sha256(path) != from_csv.manifest_hash()
    assert [row.patient for row in from_parquet.rows] == [row.patient for row in from_csv.rows]
    assert from_parquet.summary.counts() == from_csv.summary.counts()
    np.testing.assert_array_equal(
        np.stack([row.labels for row in from_parquet.rows]), np.stack([row.labels for row in from_csv.rows])
    )

    numeric = pd.DataFrame({"patient_id": [1001, 1002], "note": ["a", "b"], "label:x": [True, False]})
    numeric_path = tmp_path / "numeric.parquet"
    numeric.to_parquet(numeric_path)
    rows = read_manifest(numeric_path, ["note"], pseudonymizer=Pseudonymizer(KEY)).rows
    assert rows[0].patient == Pseudonymizer(KEY).pseudonym("1001")  # the same patient as "1001" in a CSV
    assert [row.labels[0] for row in rows] == [1.0, 0.0]


def test_manifest_errors_name_the_problem(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Patient_ID,note\nMRN-SMITH-0001,text\n")
    with pytest.raises(ManifestError, match="'patient_id'; did you mean 'Patient_ID'") as error:
        read_manifest(path, ["note"], pseudonymizer=Pseudonymizer(KEY))
    assert_no_raw_identifiers(str(error.value))
    path.write_text("patient_id,notes\nMRN-SMITH-0001,text\n")
    with pytest.raises(ManifestError, match="modality 'note'; did you mean 'notes'"):
        read_manifest(path, ["note"], pseudonymizer=Pseudonymizer(KEY))
    path.write_text("patient_id,note,note\nMRN-SMITH-0001,a,b\n")
    with pytest.raises(ManifestError, match="'note' appears more than once"):
        read_manifest(path, ["note"], pseudonymizer=Pseudonymizer(KEY))
    spreadsheet = tmp_path / "manifest.xlsx"
    spreadsheet.write_bytes(b"PK")
    with pytest.raises(ManifestError, match="unknown format '.xlsx'"):
        read_manifest(spreadsheet, ["note"], pseudonymizer=Pseudonymizer(KEY))
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "absent.csv", ["note"], pseudonymizer=Pseudonymizer(KEY))


# --- splits ----------------------------------------------------------------------------------------------------------
def split_manifest(rows: list[tuple[str, str]]) -> Manifest:
    table = pd.DataFrame(rows, columns=["patient_id", "split"]).assign(note="text")
    return Manifest.from_dataframe(table, ["note"], pseudonymizer=Pseudonymizer(KEY))


def test_patient_split_is_deterministic_by_patient_and_roughly_sized():
    manifest = split_manifest([(f"MRN-{patient}", "") for patient in range(1500) for _ in range(2)])
    assignment = assign_splits(manifest, val_fraction=0.2, test_fraction=0.1, seed=3)
    assert assignment == assign_splits(manifest, val_fraction=0.2, test_fraction=0.1, seed=3)
    assert assignment != assign_splits(manifest, val_fraction=0.2, test_fraction=0.1, seed=4)
    check_no_patient_leakage(manifest, assignment)
    split_of_patient: dict[str, set[str]] = {}
    for row in manifest.rows:
        split_of_patient.setdefault(row.patient, set()).add(assignment[row.row_number])
    assert all(len(splits) == 1 for splits in split_of_patient.values())
    fractions = {
        split: sum(splits == {split} for splits in split_of_patient.values()) / 1500 for split in ("val", "test")
    }
    assert abs(fractions["val"] - 0.2) < 0.04 and abs(fractions["test"] - 0.1) < 0.03

    leaking = dict(assignment)
    leaking[manifest.rows[0].row_number], leaking[manifest.rows[1].row_number] = "train", "test"
    with pytest.raises(ManifestError, match=manifest.rows[0].patient):
        check_no_patient_leakage(manifest, leaking)


def test_adding_rows_never_moves_old_patients_between_splits():
    """A manifest that grows (new studies of old patients, new patients) keeps every old patient in its split."""
    old = split_manifest([(f"MRN-{patient}", "") for patient in range(400) for _ in range(2)])
    grown = split_manifest(
        [(f"MRN-{patient}", "") for patient in range(400) for _ in range(3)]
        + [(f"MRN-{patient}", "") for patient in range(400, 700)]
    )

    def split_by_patient(manifest):
        assignment = assign_splits(manifest, val_fraction=0.1, test_fraction=0.2, seed=0)
        return {row.patient: assignment[row.row_number] for row in manifest.rows}

    before, after = split_by_patient(old), split_by_patient(grown)
    assert len(after) == 700 and all(after[patient] == split for patient, split in before.items())


def test_explicit_split_wins_for_the_whole_patient_and_conflicts_fail():
    manifest = split_manifest([("MRN-SMITH-0001", "test"), ("MRN-SMITH-0001", ""), ("MRN-JONES-0002", "Val")])
    assert assign_splits(manifest, 0.0, 0.0) == {1: "test", 2: "test", 3: "val"}

    conflict = split_manifest([("MRN-SMITH-0001", "train"), ("MRN-SMITH-0001", "test"), ("MRN-JONES-0002", "")])
    pseudonym = Pseudonymizer(KEY).pseudonym("MRN-SMITH-0001")
    with pytest.raises(ManifestError, match=f"patient {pseudonym} has rows in different splits") as error:
        assign_splits(conflict)
    assert "rows 1" in str(error.value) and "rows 2" in str(error.value)
    assert_no_raw_identifiers(str(error.value))

    bad = split_manifest([("MRN-SMITH-0001", "holdout"), ("MRN-JONES-0002", "train")])
    assert bad.summary.counts() == {"bad_split": 1} and len(bad.rows) == 1
    with pytest.raises(ManifestError, match="val_fraction"):
        assign_splits(bad, val_fraction=0.6, test_fraction=0.5)


# --- dataset, collate, loader ----------------------------------------------------------------------------------------
def test_dataset_validation_and_load_time_skips(csv_manifest, caplog):
    manifest = read(csv_manifest)
    with caplog.at_level(logging.INFO, logger="medclip.data"):
        dataset = ManifestDataset(manifest, modality_instances(), split=None, train=True)
        samples = [dataset[index] for index in range(len(dataset))]
    # Validation excluded the missing file (row 4) and the row with no modality (row 9); ingest rejections carried over.
    assert dataset.row_numbers() == [1, 2, 3, 5, 6]
    assert dataset.summary.counts() == {"bad_label": 1, "missing_patient_id": 1, "missing_file": 1, "no_modality": 1}
    assert {record.row_number: record.column for record in dataset.summary.records}[4] == "vector"
    markers = [sample["skipped"] for sample in samples if "skipped" in sample]
    assert [(m.row_number, m.column, m.reason) for m in markers] == [
        (5, "vector", "unreadable"),
        (6, "note", "empty_note"),
    ]
    assert markers[0].error_class in {"ValueError", "OSError", "EOFError", "UnpicklingError"}
    assert markers[1].error_class == "ModalityError"

    first, second, third = samples[:3]
    assert torch.equal(first["vector"], torch.arange(4, dtype=torch.float32))  # default transforms ran
    assert first["note"] == "small effusion" and "note" not in second and "vector" not in third
    assert first["labels"].dtype == torch.float32 and math.isnan(first["labels"][1])
    assert first["patient_id"].startswith("p-") and first["study_id"].startswith("s-") and first["row"] == 1
    assert "missing_file" in caplog.text and "row 4" in caplog.text
    assert_no_raw_identifiers(caplog.text + dataset.summary.render())

    raw = ManifestDataset(manifest, modality_instances(), transforms={})
    assert isinstance(raw[0]["vector"], np.ndarray)  # {} = samples exactly as loaded
    raw.set_transforms({"vector": modality_instances()["vector"].transforms(train=False)})
    assert isinstance(raw[0]["vector"], torch.Tensor) and raw[0]["note"] == "small effusion"
    with pytest.raises(ValueError, match="not loaded"):
        raw.set_transforms({"ecg": lambda sample: sample})


def test_dataset_filters_split_and_only_loaded_modalities(csv_manifest):
    manifest = read(csv_manifest)
    splits = {row.row_number: ("test" if row.row_number == 3 else "train") for row in manifest.rows}
    test_set = ManifestDataset(manifest, modality_instances(), "test", splits=splits)
    assert test_set.row_numbers() == [3]
    notes_only = ManifestDataset(manifest, {"note": modality_instances()["note"]}, "train", splits=splits)
    assert notes_only.row_numbers() == [1, 4, 5, 6]  # row 2 has no note: no_modality for this dataset
    assert (2, "", "no_modality") in {(r.row_number, r.column, r.reason) for r in notes_only.summary.records}
    with pytest.raises(ValueError, match="split must be one of"):
        ManifestDataset(manifest, modality_instances(), "validation", splits=splits)
    with pytest.raises(ValueError, match="not columns"):
        ManifestDataset(manifest, {"ecg": modality_instances()["vector"]})


def test_load_raw_reads_one_modality_and_records_failures(csv_manifest):
    dataset = ManifestDataset(read(csv_manifest), modality_instances())
    vectors = list(dataset.load_raw("vector"))
    assert [sample["vector"][0] for sample in vectors] == [0.0, 1.0, 2.0]  # rows 1, 2, 6; row 5 is corrupt
    assert all(set(sample) == {"vector", "vector_meta"} for sample in vectors)
    assert (5, "vector", "unreadable") in {(r.row_number, r.column, r.reason) for r in dataset.summary.records}
    notes = list(dataset.load_raw("note"))
    assert [sample["note"] for sample in notes] == ["small effusion", "clear lungs", "text"]


def test_collate_masks_missing_modalities_and_empty_batches(csv_manifest):
    dataset = ManifestDataset(read(csv_manifest), modality_instances())
    batch = collate_samples([dataset[index] for index in range(len(dataset))], dataset.modalities)
    assert batch["batch_size"] == 3 and batch["row"] == [1, 2, 3]
    assert batch["vector"].shape == (3, 4) and batch["vector_mask"].tolist() == [True, True, False]
    assert batch["note_mask"].tolist() == [True, False, True]
    assert torch.equal(batch["vector"][2], torch.zeros(4))
    assert batch["labels"].shape == (3, 2) and torch.isnan(batch["labels"][0, 1])
    assert [record.reason for record in batch["skipped"]] == ["unreadable", "empty_note"]
    assert len(batch["patient_id"]) == 3 and batch["patient_id"][0] == batch["patient_id"][1]

    empty = collate_samples([dataset[3], dataset[4]], dataset.modalities)
    assert is_empty_batch(empty) and len(empty["skipped"]) == 2 and "vector" not in empty and "labels" not in empty


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_skip_markers_survive_workers(csv_manifest, num_workers):
    dataset = ManifestDataset(read(csv_manifest), modality_instances(), train=True)
    loader = DataLoader(dataset, batch_size=2, num_workers=num_workers, collate_fn=dataset.collate_fn)
    summary, rows = SkipSummary(), []
    for batch in loader:
        summary.add_markers(batch["skipped"])
        if not is_empty_batch(batch):
            rows += batch["row"]
            assert batch["vector_mask"].shape == (batch["batch_size"],)
    assert rows == [1, 2, 3]
    assert {(r.row_number, r.reason) for r in summary.records} == {(5, "unreadable"), (6, "empty_note")}
    dataset.summary.merge(summary)
    assert dataset.summary.counts()["unreadable"] == 1 and dataset.summary.total() == 6


# --- summary ---------------------------------------------------------------------------------------------------------
def test_summary_dedupes_logs_once_and_guards_the_skip_fraction(caplog):
    summary = SkipSummary()
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        assert summary.add(3, "vector", "unreadable", "ValueError")
        assert not summary.add(3, "vector", "unreadable", "ValueError")  # the same file again in the next epoch
        summary.add(3, "note", "empty_note", "ModalityError")
        summary.add(8, "patient_id", "missing_patient_id")
    assert caplog.text.count("row 3, column 'vector': skipped (unreadable, ValueError)") == 1
    assert summary.counts() == {"unreadable": 1, "empty_note": 1, "missing_patient_id": 1}
    assert summary.skipped_rows == {3, 8}
    summary.ignore_column("lable:edema", "label:edema")
    table = summary.render()
    assert "unreadable" in table and "did you mean 'label:edema'" in table
    exported = json.loads(json.dumps(summary.to_dict()))
    assert exported["skipped_rows"] == 2 and exported["skips"][0]["row_number"] == 3

    other = SkipSummary()
    other.add(9, "", "no_modality")
    assert len(SkipSummary().merge(summary).merge(other).merge(summary)) == 4

    check_skip_fraction(summary, total_rows=10, max_fraction=0.5)
    with pytest.raises(TooManySkippedError, match="2 of 3 manifest rows"):
        check_skip_fraction(summary, total_rows=3, max_fraction=0.5)
    with pytest.raises(TooManySkippedError, match="no rows"):
        check_skip_fraction(summary, total_rows=0, max_fraction=0.5)


def test_key_file_permissions_warning(tmp_path, caplog):
    key_file = tmp_path / "shared.key"
    key_file.write_text(KEY.hex())
    os.chmod(key_file, 0o644)
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        loaded = Pseudonymizer.from_key_file(key_file)
    assert loaded.pseudonym("x") == Pseudonymizer(KEY).pseudonym("x")
    assert "readable by other users" in caplog.text
