"""Write a volume as a classic DICOM CT series (one file per slice), as scanners export it.

Used by the phantom dataset writer (so users can try the DICOM path without an archive) and by the tests. Stored
values are unsigned with RescaleIntercept -1024, the common CT convention, so readers must apply the rescale once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from .geometry import LPS_TO_RAS

RESCALE_INTERCEPT = -1024


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    return f"{value:.6g}"


def write_dicom_series(
    folder: str | os.PathLike,
    hounsfield: np.ndarray,
    affine_ras: np.ndarray,
    *,
    identifiers: Mapping[str, str] | None = None,
    series_number: int = 1,
    study_uid: str | None = None,
    series_uid: str | None = None,
    shuffle_seed: int | None = None,
) -> list[Path]:
    """Write (I, J, K) Hounsfield units as one file per k-slice; returns the file paths in slice order.

    Args:
        folder: created if needed.
        hounsfield: (I, J, K) integer HU in [-1024, 64511].
        affine_ras: the RAS affine of the array; its i and j columns must be orthogonal.
        identifiers: patient-level tags to put in every header (PatientName, PatientID, ...).
        series_number: the SeriesNumber tag.
        study_uid: StudyInstanceUID (a new one by default); series_uid likewise.
        shuffle_seed: when given, file names and InstanceNumbers are shuffled so that neither follows anatomy.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    affine = LPS_TO_RAS @ np.asarray(affine_ras, dtype=np.float64)  # DICOM positions are LPS
    column_spacing, row_spacing, _ = np.linalg.norm(affine[:3, :3], axis=0)
    row_direction = affine[:3, 0] / column_spacing  # direction of increasing i (along a row)
    column_direction = affine[:3, 1] / row_spacing  # direction of increasing j (down a column)
    stored = np.asarray(hounsfield).astype(np.int64) - RESCALE_INTERCEPT
    if stored.min() < 0 or stored.max() > np.iinfo(np.uint16).max:
        raise ValueError("Hounsfield units must lie in [-1024, 64511] for unsigned 16-bit storage")
    stored = stored.astype(np.uint16)
    slices = hounsfield.shape[2]
    order = np.arange(slices)
    names = np.arange(slices)
    if shuffle_seed is not None:
        rng = np.random.default_rng(shuffle_seed)
        order = rng.permutation(slices)  # InstanceNumber of each slice, unrelated to position
        names = rng.permutation(slices)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    paths = []
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        dataset = Dataset()
        dataset.file_meta = meta
        dataset.SOPClassUID = CTImageStorage
        dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_uid
        dataset.FrameOfReferenceUID = frame_uid
        dataset.Modality = "CT"
        dataset.SeriesNumber = series_number
        dataset.InstanceNumber = int(order[k]) + 1
        for keyword, value in (identifiers or {}).items():
            setattr(dataset, keyword, value)
        position = affine[:3, 3] + affine[:3, 2] * k
        dataset.ImagePositionPatient = [_ds(value) for value in position]
        dataset.ImageOrientationPatient = [_ds(value) for value in (*row_direction, *column_direction)]
        dataset.PixelSpacing = [_ds(row_spacing), _ds(column_spacing)]
        dataset.SliceThickness = _ds(float(np.linalg.norm(affine[:3, 2])))
        dataset.Rows, dataset.Columns = int(hounsfield.shape[1]), int(hounsfield.shape[0])
        dataset.SamplesPerPixel = 1
        dataset.PhotometricInterpretation = "MONOCHROME2"
        dataset.BitsAllocated = 16
        dataset.BitsStored = 16
        dataset.HighBit = 15
        dataset.PixelRepresentation = 0
        dataset.RescaleIntercept = str(RESCALE_INTERCEPT)
        dataset.RescaleSlope = "1"
        dataset.RescaleType = "HU"
        dataset.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # rows x columns
        path = folder / f"IM{int(names[k]):05d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
