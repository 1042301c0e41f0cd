"""Compressed DICOM pixel data: check that a decoder is installed before decoding, and say what to install if not.

pydicom decodes compressed transfer syntaxes through pixel-data plugins (pylibjpeg, gdcm, pyjpegls, ...). Without
one, pydicom's own error is long and generic; here the message names the transfer syntax and the package.
"""

from __future__ import annotations

from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset

from medclip.types import ModalityError

# Transfer syntax -> the pip packages that decode it (pydicom's pixel-data plugins; python-gdcm decodes all of them).
DECODER_PACKAGES: dict[str, str] = {
    **{
        syntax: "pylibjpeg pylibjpeg-libjpeg (or python-gdcm)"
        for syntax in (
            dicom_uid.JPEGBaseline8Bit,
            dicom_uid.JPEGExtended12Bit,
            dicom_uid.JPEGLossless,
            dicom_uid.JPEGLosslessSV1,
        )
    },
    **{syntax: "pyjpegls (or python-gdcm)" for syntax in (dicom_uid.JPEGLSLossless, dicom_uid.JPEGLSNearLossless)},
    **{
        syntax: "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)"
        for syntax in (
            dicom_uid.JPEG2000Lossless,
            dicom_uid.JPEG2000,
            dicom_uid.HTJ2KLossless,
            dicom_uid.HTJ2KLosslessRPCL,
            dicom_uid.HTJ2K,
        )
    },
    dicom_uid.RLELossless: "numpy (pydicom's own RLE decoder) or pylibjpeg pylibjpeg-rle",
}


def transfer_syntax_name(dataset: Dataset) -> str:
    """The human-readable name of the dataset's transfer syntax (a standard UID, never an identifier)."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return "Implicit VR Little Endian (assumed: no file meta)"
    return dicom_uid.UID(syntax).name


def check_decodable(dataset: Dataset) -> None:
    """Raise before decoding when no installed plugin can decode this dataset's pixel data.

    Raises:
        ModalityError: ``unsupported_transfer_syntax`` when pydicom has no decoder for the syntax at all (e.g. video
            syntaxes), ``missing_decoder`` when one exists but its package is not installed.
    """
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return
    syntax = dicom_uid.UID(syntax)
    if not syntax.is_compressed:
        return
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise ModalityError(
            "unsupported_transfer_syntax",
            f"pixel data is compressed with {syntax.name} ({syntax}), which no pydicom pixel-data plugin decodes; "
            "convert the series to an uncompressed or JPEG/JPEG 2000 transfer syntax first",
        ) from error
    if not decoder.is_available:
        package = DECODER_PACKAGES.get(syntax, "python-gdcm")
        raise ModalityError(
            "missing_decoder",
            f"pixel data is compressed with {syntax.name} ({syntax}) and no installed decoder reads it: "
            f"pip install {package}",
        )
