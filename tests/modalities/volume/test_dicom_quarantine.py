"""DICOM objects that may show patient data in their pixels are quarantined by default and counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest

import medclip
from medclip.data import ManifestDataset, SplitConfig, read_manifest
from medclip.types import ModalityError
from modalities.volume.dicom_series import read_dicom_series
from modalities.volume.dicom_write import write_dicom_series

AFFINE = np.diag([-0.8, -0.8, 2.0, 1.0])


def write_series(folder, series_number=1, **tags):
    hounsfield = np.random.default_rng(series_number).integers(-1000, 1000, size=(8, 8, 4)).astype(np.int16)
    paths = write_dicom_series(folder, hounsfield, AFFINE, series_number=series_number)
    for path in paths:
        dataset = pydicom.dcmread(path)
        for keyword, value in tags.items():
            setattr(dataset, keyword, value)
        dataset.save_as(path, enforce_file_format=True)
    return hounsfield


@pytest.mark.parametrize(
    "tags,reason",
    [
        ({"BurnedInAnnotation": "YES"}, "quarantined_burned_in_annotation"),
        ({"Modality": "US"}, "quarantined_modality"),
        ({"Modality": "SC"}, "quarantined_modality"),
        ({"Modality": "OT"}, "quarantined_modality"),
    ],
)
def test_flagged_series_are_quarantined_unless_screened(tmp_path, tags, reason):
    hounsfield = write_series(tmp_path / "series", **tags)
    with pytest.raises(ModalityError) as raised:
        read_dicom_series(tmp_path / "series")
    assert raised.value.reason == reason
    with pytest.raises(ModalityError, match=reason):
        medclip.get_modality("ct").load(tmp_path / "series")
    screened = read_dicom_series(tmp_path / "series", quarantine=False)  # data the user has already screened
    assert np.array_equal(screened.data, hounsfield)
    plugin = medclip.get_modality("ct", {"quarantine": False, "cache_dir": str(tmp_path / "cache")})
    assert np.array_equal(plugin.load(tmp_path / "series")["ct"], hounsfield)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # unscreened inputs never enter the cache


def test_burned_in_no_and_ct_modality_load(tmp_path):
    hounsfield = write_series(tmp_path / "series", BurnedInAnnotation="NO")
    assert np.array_equal(read_dicom_series(tmp_path / "series").data, hounsfield)


def test_a_quarantined_series_beside_a_good_one_is_listed_and_the_good_one_loads(tmp_path):
    folder = tmp_path / "study"
    good = write_series(folder / "a", series_number=1)
    write_series(folder / "b", series_number=2, BurnedInAnnotation="YES")
    for path in (folder / "b").iterdir():
        path.rename(folder / f"b_{path.name}")
    for path in (folder / "a").iterdir():
        path.rename(folder / f"a_{path.name}")
    volume = read_dicom_series(folder)
    assert np.array_equal(volume.data, good)
    assert volume.details["rejected_series"] == [{"series_number": 2, "reason": "quarantined_burned_in_annotation"}]


def test_quarantine_is_counted_in_the_run_summary(tmp_path):
    write_series(tmp_path / "clean", series_number=1)
    write_series(tmp_path / "burned", series_number=1, BurnedInAnnotation="YES")
    write_series(tmp_path / "ultrasound", series_number=1, Modality="US")
    table = pd.DataFrame({"patient_id": ["a", "b", "c"], "ct": ["clean", "burned", "ultrasound"], "split": "train"})
    table.to_csv(tmp_path / "manifest.csv", index=False)
    manifest = read_manifest(tmp_path / "manifest.csv", ["ct"])
    splits = SplitConfig().assign(manifest)
    dataset = ManifestDataset(manifest, {"ct": medclip.get_modality("ct")}, "train", transforms={}, splits=splits)
    loaded = [dataset[index] for index in range(len(dataset))]
    assert sum("ct" in sample for sample in loaded) == 1
    for sample in loaded:
        if "skipped" in sample:
            dataset.summary.add_markers([sample["skipped"]])
    assert dataset.summary.counts() == {"quarantined_burned_in_annotation": 1, "quarantined_modality": 1}
