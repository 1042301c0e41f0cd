"""pydicom must not quote header values (or paths) into warnings and logs while medclip reads DICOM."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pydicom
import pydicom.config

import medclip
from modalities.volume.dicom_write import write_dicom_series

BAD_UID = "1.2.840.Quennel.1937"  # an invalid UI value holding a name: pydicom quotes invalid values it reads


def write_series_with_invalid_values(folder):
    paths = write_dicom_series(folder, np.zeros((8, 8, 3), dtype=np.int16), np.diag([-1.0, -1.0, 2.0, 1.0]))
    previous = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        for path in paths:
            dataset = pydicom.dcmread(path)
            dataset.StudyInstanceUID = BAD_UID  # read by the CT loader (it keys the study pseudonym)
            dataset.save_as(path, enforce_file_format=True)
    finally:
        pydicom.config.settings.writing_validation_mode = previous
    return paths


def test_reading_quotes_no_header_value(tmp_path, caplog):
    paths = write_series_with_invalid_values(tmp_path / "Quennel_series")
    with warnings.catch_warnings(record=True) as control:  # plain pydicom does quote the value
        warnings.simplefilter("always")
        str(pydicom.dcmread(paths[0]).StudyInstanceUID)
    assert any(BAD_UID in str(item.message) for item in control)

    caplog.clear()  # what pydicom said while the test wrote the files is not the reader's doing
    caplog.set_level(logging.DEBUG)
    mode_before = pydicom.config.settings.reading_validation_mode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample = medclip.get_modality("ct").load(tmp_path / "Quennel_series")
    assert sample["ct"].shape == (8, 8, 3)
    messages = [str(item.message) for item in caught] + [record.getMessage() for record in caplog.records]
    assert not [message for message in messages if "Quennel" in message]
    assert pydicom.config.settings.reading_validation_mode == mode_before  # the user's setting is restored
