"""Write 2-D images as DICOM files the way modalities export them (CR, DX, MG, OP, ...).

Used by the chest-radiograph phantom writer (so users can try the DICOM path without an archive), the tests and the
crafted-input cases: each builds a real file with pydicom and reads it back through the plugin.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset, FileMetaDataset

SOP_CLASSES = {
    "CR": dicom_uid.ComputedRadiographyImageStorage,
    "DX": dicom_uid.DigitalXRayImageStorageForPresentation,
    "MG": dicom_uid.DigitalMammographyXRayImageStorageForPresentation,
    "IO": dicom_uid.DigitalIntraOralXRayImageStorageForPresentation,
    "OP": dicom_uid.OphthalmicPhotography8BitImageStorage,
    "XC": dicom_uid.VLPhotographicImageStorage,
    "SC": dicom_uid.SecondaryCaptureImageStorage,
    "OT": dicom_uid.SecondaryCaptureImageStorage,
    "CT": dicom_uid.CTImageStorage,
}


def image_dataset(
    stored: np.ndarray,
    modality: str = "CR",
    *,
    photometric: str | None = None,
    bits_stored: int | None = None,
    spacing: tuple[float, float] | None = None,
    spacing_tag: str = "ImagerPixelSpacing",
    identifiers: Mapping[str, str] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Dataset:
    """A DICOM image dataset holding ``stored`` as its pixel data (uncompressed, explicit VR little endian).

    Args:
        stored: (rows, columns) unsigned/signed 8- or 16-bit stored values, or (rows, columns, 3) uint8 RGB.
        modality: the Modality tag; it picks the SOP class.
        photometric: PhotometricInterpretation (default MONOCHROME2, or RGB for colour).
        bits_stored: BitsStored (default: all allocated bits).
        spacing: (row, column) mm, written to ``spacing_tag`` (PixelSpacing or ImagerPixelSpacing).
        identifiers: patient-level tags (PatientName, PatientID, ...): what a real export carries.
        tags: any further tags (WindowCenter, VOILUTSequence, BurnedInAnnotation, ...), set last.
    """
    stored = np.ascontiguousarray(stored)
    color = stored.ndim == 3
    allocated = stored.dtype.itemsize * 8
    meta = FileMetaDataset()
    sop_class = SOP_CLASSES.get(modality, dicom_uid.SecondaryCaptureImageStorage)
    if modality == "OP" and allocated == 16:
        sop_class = dicom_uid.OphthalmicPhotography16BitImageStorage
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = dicom_uid.generate_uid()
    meta.TransferSyntaxUID = dicom_uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = dicom_uid.PYDICOM_IMPLEMENTATION_UID
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID = dicom_uid.generate_uid()
    dataset.SeriesInstanceUID = dicom_uid.generate_uid()
    dataset.Modality = modality
    for keyword, value in (identifiers or {}).items():
        setattr(dataset, keyword, value)
    dataset.Rows, dataset.Columns = int(stored.shape[0]), int(stored.shape[1])
    dataset.SamplesPerPixel = 3 if color else 1
    dataset.PhotometricInterpretation = photometric or ("RGB" if color else "MONOCHROME2")
    if color:
        dataset.PlanarConfiguration = 0
    dataset.BitsAllocated = allocated
    dataset.BitsStored = bits_stored or allocated
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    if spacing is not None:
        setattr(dataset, spacing_tag, [f"{value:.6g}" for value in spacing])
    dataset.PixelData = stored.tobytes()
    for keyword, value in (tags or {}).items():
        setattr(dataset, keyword, value)
    return dataset


def write_dicom_image(path: str | os.PathLike, dataset: Dataset) -> Path:
    """Save ``dataset`` as a DICOM file (with preamble and file meta); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path
