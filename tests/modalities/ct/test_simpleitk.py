"""The CT loader against SimpleITK (a test-only reference): the same series, shuffled on disk, gives the same
voxels in the same patient coordinates as SimpleITK's GDCM-based series reader."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import medclip
from modalities.volume.dicom_write import write_dicom_series
from modalities.volume.geometry import LPS_TO_RAS
from tests.helpers import lps_affine

sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is the test-only reference reader")


OBLIQUE_ROW = np.array([np.cos(0.3), np.sin(0.3), 0.0])
GEOMETRIES = {
    "axial": lps_affine([1, 0, 0], [0, 1, 0], (0.7, 0.8, 2.5), [-7.0, -6.4, -30.0]),
    "sagittal": lps_affine([0, 1, 0], [0, 0, -1], (0.9, 1.1, 2.0), [12.0, -8.0, 9.0]),
    "coronal": lps_affine([1, 0, 0], [0, 0, -1], (0.6, 0.6, 3.0), [-5.0, 20.0, 40.0]),
    "oblique_axial": lps_affine(OBLIQUE_ROW, [-OBLIQUE_ROW[1], OBLIQUE_ROW[0], 0.0], (0.5, 0.5, 1.25), [3, 4, -2]),
}


def simpleitk_volume(folder) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK's reading of a series folder as (x, y, z) voxels and their RAS affine."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    voxels = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))  # SimpleITK arrays are (z, y, x)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = direction * np.asarray(image.GetSpacing())  # scale each index axis's direction
    affine_lps[:3, 3] = image.GetOrigin()
    return voxels, LPS_TO_RAS @ affine_lps


def canonical(voxels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = nib.as_closest_canonical(nib.Nifti1Image(voxels, affine))
    return np.asarray(image.dataobj), image.affine


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_shuffled_series_matches_simpleitk(tmp_path, name):
    rng = np.random.default_rng(11)
    hounsfield = rng.integers(-1024, 2000, size=(18, 14, 10)).astype(np.int16)  # (I, J, K)
    folder = tmp_path / "series"
    write_dicom_series(folder, hounsfield, GEOMETRIES[name], shuffle_seed=5, identifiers={"PatientName": "Roe^Ann"})

    sample = medclip.get_modality("ct").load(folder)
    ours, our_affine = canonical(sample["ct"].astype(np.int16), np.asarray(sample["ct_meta"]["affine"]))
    reference, reference_affine = canonical(*simpleitk_volume(folder))
    assert ours.shape == reference.shape
    assert np.array_equal(ours, reference.astype(np.int16))  # Hounsfield units: rescale applied exactly once
    np.testing.assert_allclose(our_affine, reference_affine, atol=1e-3)  # same voxel -> same patient point
    # The reported spacing is that of the array axes the affine describes.
    our_columns = np.asarray(sample["ct_meta"]["affine"])[:3, :3]
    np.testing.assert_allclose(sample["ct_meta"]["spacing"], np.linalg.norm(our_columns, axis=0), atol=1e-5)
