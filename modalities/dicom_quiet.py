"""Keep pydicom from writing header values or file paths into warnings and logs while medclip reads DICOM.

pydicom reports an invalid value by quoting it ("Invalid value for VR DA: '1937O412'") and some read problems by
naming the file: both can be patient data (a mistyped birth date, a folder named after the patient). medclip's
readers check what they use themselves and fail with reason codes, so pydicom's own value validation is switched to
"ignore" and its warnings and log lines are dropped for the duration of a read. Shared by the CT/OCT and ECG readers.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

F = TypeVar("F", bound=Callable)


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    import pydicom.config

    settings = pydicom.config.settings
    previous_mode = settings.reading_validation_mode
    logger = logging.getLogger("pydicom")
    previous_level = logger.level
    settings.reading_validation_mode = pydicom.config.IGNORE
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
            yield
    finally:
        settings.reading_validation_mode = previous_mode
        logger.setLevel(previous_level)


def quietly(function: F) -> F:
    """Run a DICOM reader inside ``quiet_pydicom``."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with quiet_pydicom():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
