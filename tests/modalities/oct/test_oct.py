"""The ``oct`` plugin: multi-frame DICOM, TIFF, NIfTI and NumPy inputs agree; normalisation, resampling, cache."""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

import medclip
from medclip.types import ModalityError
from modalities.oct.synthetic import synthetic_oct_volume

OPHTHALMIC_TOMOGRAPHY = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
IDENTIFIERS = {"PatientName": "Roe^Richard", "PatientID": "EYE4455667", "StudyDate": "20220202"}
SMALL = {"n_bscans": 8, "bscan_size": [32, 48], "patch_size": [8, 8, 8]}


@pytest.fixture(scope="module")
def volume():
    return synthetic_oct_volume(5, shape=(40, 64, 10))  # (lateral, axial, B-scan) uint16


def write_oct_dicom(path, volume, spacing=(0.012, 0.0039, 0.24)):
    """A multi-frame Ophthalmic Tomography object: frames = B-scans, pixel measures in the shared groups."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPHTHALMIC_TOMOGRAPHY
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = OPHTHALMIC_TOMOGRAPHY
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.Modality = "OPT"
    for keyword, value in IDENTIFIERS.items():
        setattr(dataset, keyword, value)
    frames = np.ascontiguousarray(volume.transpose(2, 1, 0))  # (B-scan, axial rows, lateral columns)
    dataset.NumberOfFrames = frames.shape[0]
    dataset.Rows, dataset.Columns = frames.shape[1], frames.shape[2]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    measures = Dataset()
    measures.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]  # (row = axial, column = lateral)
    measures.SliceThickness = f"{spacing[2]:g}"
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    dataset.SharedFunctionalGroupsSequence = [shared]
    dataset.PixelData = frames.astype(np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)


def test_dicom_tiff_nifti_and_numpy_load_the_same_volume(tmp_path, volume, caplog):
    caplog.set_level(logging.DEBUG)
    write_oct_dicom(tmp_path / "Roe_Richard.dcm", volume)
    tifffile.imwrite(tmp_path / "scan.tif", volume.transpose(2, 1, 0))  # one page per B-scan
    affine = np.diag([0.012, 0.0039, 0.24, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "scan.nii.gz")
    np.save(tmp_path / "scan.npy", volume)
    (tmp_path / "scan.json").write_text(json.dumps({"spacing": [0.012, 0.0039, 0.24]}))
    plugin = medclip.get_modality("oct", SMALL)
    loaded = {name: plugin.load(tmp_path / name) for name in ("Roe_Richard.dcm", "scan.tif", "scan.nii.gz", "scan.npy")}
    for sample in loaded.values():
        assert np.array_equal(sample["oct"], volume)
    dicom_meta = loaded["Roe_Richard.dcm"]["oct_meta"]
    np.testing.assert_allclose(dicom_meta["spacing"], [0.012, 0.0039, 0.24])
    assert dicom_meta["frames"] == 10 and dicom_meta["spacing_known"] is True
    assert loaded["scan.tif"]["oct_meta"]["spacing_known"] is False
    text = json.dumps(dicom_meta) + caplog.text
    for secret in (*IDENTIFIERS.values(), "Roe", "Richard"):
        assert secret not in text


def test_normalised_and_resampled_to_the_configured_shape(volume):
    plugin = medclip.get_modality("oct", SMALL)
    sample = {"oct": volume, "oct_meta": plugin.synthetic(1)[0]["oct_meta"]}
    tensor = plugin.transforms(train=False)(sample)["oct"]
    assert tensor.shape == (1, 32, 48, 8) and tensor.dtype == torch.float16
    assert tensor.min() >= 0 and tensor.max() <= 1 and tensor.float().std() > 0.05
    zscore = medclip.get_modality("oct", {**SMALL, "normalization": "zscore"})
    values = zscore.transforms(train=False)(sample)["oct"].float()
    assert abs(values.mean()) < 0.2 and 0.6 < values.std() < 1.4  # resampling smooths speckle a little
    augmented = plugin.transforms(train=True)(dict(sample))["oct"]
    assert augmented.shape == tensor.shape and 0 <= augmented.min() and augmented.max() <= 1


def test_cache_stores_float16_and_matches(tmp_path, volume):
    tifffile.imwrite(tmp_path / "scan.tif", volume.transpose(2, 1, 0))
    cached = medclip.get_modality("oct", {**SMALL, "cache_dir": str(tmp_path / "cache")})
    plain = medclip.get_modality("oct", SMALL)
    cached.load(tmp_path / "scan.tif")
    hit = cached.load(tmp_path / "scan.tif")
    assert isinstance(hit["oct"], np.memmap) and hit["oct"].dtype == np.float16 and hit["oct"].shape == (32, 48, 8)
    expected = plain.transforms(train=False)(plain.load(tmp_path / "scan.tif"))["oct"]
    assert torch.equal(cached.transforms(train=False)(hit)["oct"], expected)


def test_bad_inputs_have_reasons(tmp_path, volume):
    plugin = medclip.get_modality("oct", SMALL)
    (tmp_path / "scan.e2e").write_bytes(b"\x00" * 64)
    with pytest.raises(ModalityError) as raised:
        plugin.load(tmp_path / "scan.e2e")
    assert raised.value.reason == "missing_package" and "oct-converter" in str(raised.value)
    tifffile.imwrite(tmp_path / "flat.tif", np.full((4, 16, 16), 7, dtype=np.uint16))
    with pytest.raises(ModalityError, match="constant_volume"):
        plugin.transforms(train=False)(plugin.load(tmp_path / "flat.tif"))
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((16, 16), dtype=np.uint16))
    with pytest.raises(ModalityError, match="not_3d"):
        plugin.load(tmp_path / "one.tif")
    with pytest.raises(ModalityError, match="unsupported_format"):
        (tmp_path / "scan.png").write_bytes(b"x")
        plugin.load(tmp_path / "scan.png")


def test_resnet_encoder_on_oct():
    plugin = medclip.get_modality("oct", {**SMALL, "encoder": "resnet", "patch_size": []})
    batch = plugin.collate([plugin.transforms(train=False)(s) for s in plugin.synthetic(2)])
    output = plugin.build_encoder()(batch["oct"])
    assert output.pooled.shape == (2, 64) and output.tokens.shape[0] == 2 and torch.isfinite(output.pooled).all()
