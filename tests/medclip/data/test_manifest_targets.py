"""``target:<name>`` manifest columns: continuous values (ejection fraction, age, gene scores) read as float32 with NaN
for unknown, bad cells rejected per row with a reason code, and carried into samples and batches as ``targets``.

Manifests are real CSV and Parquet files written by pandas; the inline-text modality below needs no other file.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from medclip.data import ManifestDataset, Pseudonymizer, collate_samples, read_manifest
from medclip.types import Modality

KEY = b"0123456789abcdef0123456789abcdef"
PATIENT_NAMES = ["MRN-SMITH-0001", "MRN-JONES-0002"]


class InlineNote(Modality):
    """Inline free text in the manifest cell: enough of a modality for a dataset and a batch."""

    name = "note"

    def resolve(self, value, root):
        return {"text": value}

    def load(self, ref):
        return {"note": ref["text"]}

    def collate(self, samples):
        return {
            "note": [sample.get("note", "") for sample in samples],
            "note_mask": torch.tensor(["note" in sample for sample in samples]),
        }


# (cell of target:ejection fraction, cell of target:age, expected reason or values)
CASES = [
    ("55.5", "61", (55.5, 61.0)),
    ("", " 70 ", (math.nan, 70.0)),  # blank = unknown; surrounding spaces are not an error
    ("nan", "NaN", (math.nan, math.nan)),  # what pandas writes for a missing float
    ("-1.5e1", ".5", (-15.0, 0.5)),
    ("+40.", "0", (40.0, 0.0)),
    ("55,3", "60", "bad_target"),  # decimal comma: 55.3 or 553? rejected, never guessed
    ("abc", "60", "bad_target"),
    ("inf", "60", "bad_target"),
    ("1e39", "60", "bad_target"),  # beyond float32
    ("1_000", "60", "bad_target"),  # Python's float() accepts this; a manifest must not
    ("0x1A", "60", "bad_target"),
    ("50", "true", "bad_target"),
]


def case_table() -> pd.DataFrame:
    rows = []
    for index, (fraction, age, _) in enumerate(CASES):
        rows.append(
            {
                "patient_id": PATIENT_NAMES[index % 2],
                "note": f"echo report {index}",
                "target:ejection fraction": fraction,
                "target:age": age,
                "label:effusion": "1" if index % 3 == 0 else "",
            }
        )
    return pd.DataFrame(rows)


def read(path, **kwargs):
    return read_manifest(path, ["note"], pseudonymizer=Pseudonymizer(KEY), **kwargs)


def test_csv_targets_are_float32_with_nan_and_bad_cells_are_rejected_per_row(tmp_path, caplog):
    path = tmp_path / "manifest.csv"
    case_table().to_csv(path, index=False)
    with caplog.at_level(logging.INFO, logger="medclip.data"):
        manifest = read(path)
    assert manifest.target_names == ("ejection fraction", "age")
    assert manifest.label_names == ("effusion",)
    accepted = {row.row_number: row for row in manifest.rows}
    for row_number, (_, _, expected) in enumerate(CASES, start=1):
        if expected == "bad_target":
            assert row_number not in accepted
            continue
        targets = accepted[row_number].targets
        assert targets.dtype == np.float32 and targets.shape == (2,)
        np.testing.assert_array_equal(targets, np.array(expected, dtype=np.float32))
    bad = {(record.row_number, record.column, record.reason) for record in manifest.summary.records}
    expected_bad = {
        (row_number, "target:age" if fraction == "50" else "target:ejection fraction", "bad_target")
        for row_number, (fraction, _, expected) in enumerate(CASES, start=1)
        if expected == "bad_target"
    }
    assert bad == expected_bad
    assert manifest.summary.counts() == {"bad_target": len(expected_bad)}
    text = caplog.text + manifest.summary.render()
    for cell in ("55,3", "abc", "1_000", "0x1A", *PATIENT_NAMES):  # reasons and row numbers only, never cell values
        assert cell not in text
    assert "continuous targets" in caplog.text and "not used by this run" not in caplog.text


def test_parquet_numeric_columns_match_csv(tmp_path):
    table = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c"],
            "note": ["x", "y", "z"],
            "target:ejection fraction": np.array([55.25, np.nan, 40.0], dtype=np.float64),
            "target:age": pd.array([61, None, 80], dtype="Int64"),
            "target:score": np.array([0.1, -2.5, 3.0], dtype=np.float32),
        }
    )
    table.to_parquet(tmp_path / "manifest.parquet")
    table.to_csv(tmp_path / "manifest.csv", index=False)
    from_parquet, from_csv = read(tmp_path / "manifest.parquet"), read(tmp_path / "manifest.csv")
    expected = np.array([[55.25, 61, 0.1], [np.nan, np.nan, -2.5], [40.0, 80, 3.0]], dtype=np.float32)
    for manifest in (from_parquet, from_csv):
        assert manifest.target_names == ("ejection fraction", "age", "score")
        np.testing.assert_array_equal(np.stack([row.targets for row in manifest.rows]), expected)


def test_a_misspelt_target_column_is_reported_with_the_closest_name(tmp_path, caplog):
    table = pd.DataFrame({"patient_id": ["a"], "note": ["x"], "traget:age": ["61"], "target:": ["1"]})
    with caplog.at_level(logging.WARNING, logger="medclip.data"):
        manifest = read_manifest_table(table, tmp_path)
    assert manifest.target_names == ()
    assert manifest.summary.ignored_columns["traget:age"] == "target:age"
    assert "target:" in manifest.summary.ignored_columns  # a prefix without a name is no target
    assert manifest.rows[0].targets.shape == (0,)


def read_manifest_table(table: pd.DataFrame, tmp_path) -> object:
    path = tmp_path / "manifest.csv"
    table.to_csv(path, index=False)
    return read(path)


def test_dataset_samples_and_batches_carry_targets(tmp_path):
    path = tmp_path / "manifest.csv"
    case_table().to_csv(path, index=False)
    manifest = read(path)
    dataset = ManifestDataset(manifest, {"note": InlineNote()}, transforms={})
    samples = [dataset[index] for index in range(len(dataset))]
    first = samples[0]
    assert first["targets"].dtype == torch.float32 and first["targets"].tolist() == [55.5, 61.0]
    batch = collate_samples(samples, dataset.modalities)
    assert batch["targets"].shape == (len(samples), 2) and batch["targets"].dtype == torch.float32
    expected = np.stack([row.targets for row in dataset.rows()])
    np.testing.assert_array_equal(batch["targets"].numpy(), expected)  # NaN where unknown
    assert torch.isnan(batch["targets"][1, 0]) and batch["labels"].shape == (len(samples), 1)
    samples[0]["targets"][0] = -1.0  # a sample's tensor is its own copy: the manifest row is untouched
    assert dataset.rows()[0].targets[0] == np.float32(55.5)


def test_manifest_without_targets_gives_empty_target_columns_and_mixed_batches_fail(tmp_path):
    table = pd.DataFrame({"patient_id": ["a", "b"], "note": ["x", "y"]})
    manifest = read_manifest_table(table, tmp_path)
    dataset = ManifestDataset(manifest, {"note": InlineNote()}, transforms={})
    batch = collate_samples([dataset[0], dataset[1]], dataset.modalities)
    assert batch["targets"].shape == (2, 0)
    without = {key: value for key, value in dataset[1].items() if key != "targets"}
    with pytest.raises(ValueError, match="1 of 2 samples carry 'targets'"):
        collate_samples([dataset[0], without], dataset.modalities)
    made_elsewhere = [{key: value for key, value in dataset[i].items() if key != "targets"} for i in range(2)]
    assert "targets" not in collate_samples(made_elsewhere, dataset.modalities)
