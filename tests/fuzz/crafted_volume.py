"""Crafted hostile CT and OCT inputs (issue 14): special files, memory bombs, silent garbage, damaged geometry.

Every input is written in-process by the real writer of its format (pydicom, nibabel, NumPy, tifffile, PIL, zlib for
the deflate streams) and then, where the attack needs it, damaged byte by byte. ``cases(root)`` returns them for the
crafted-input harness (``tests/fuzz/crafted.py``), which runs each through ``resolve`` -> ``load`` -> evaluation
``transforms`` in a child process under a memory limit and a time budget. The groups:

- special files where a file is expected: FIFOs, ``/dev/zero`` and ``/dev/urandom`` (through links), symbolic-link
  loops, folders, each as the manifest cell, as an entry of a DICOM series folder and as a NumPy sidecar;
- memory from small files: 90 mm voxels resampled to 3 mm, NIfTI headers declaring gigabytes, a NIfTI extension
  declaring 2 GB, a deflated DICOM that inflates to gigabytes, huge Rows/Columns/NumberOfFrames, a TIFF of zlib pages
  of zeros (1.2 MB -> 2.25 GB), budgets (``max_decoded_mb``) set below a small input;
- silent garbage: RescaleSlope NaN / 1e308 / 0, huge intercepts, complex and RGB voxels, NaN and 1e30 voxels, TIFF
  pages of two sizes (a generic reader keeps the first run), NaN spacing that readers used to replace by 1;
- damaged geometry and structure: NaN / infinite / 1e6 mm / 1e-7 mm spacing, zero and negative dimensions, truncated
  files, element lengths beyond the end of the file, sequences nested 3000 deep, 300 000 tiny elements, one-slice
  series with and without a thickness, unreadable or hostile JSON sidecars;
- controls that must load (a good file of each format) so a reader that refuses everything cannot pass.

A few cases run with ``cache_dir`` set, so the preprocessing cache's hashing of the inputs is attacked too.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from modalities.volume.dicom_write import write_dicom_series
from tests.fuzz.crafted import LOADS, Crafted

UID_ROOT = "1.2.826.0.1.3680043.8.498.14"  # fixed UIDs: a rebuild writes the same headers
OPHTHALMIC_TOMOGRAPHY = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
SPECIAL = 5.0  # seconds for inputs that hang a reader that opens them
TIFF_BOMB_PAGES = 144  # 144 zlib pages of 2048 x 2048 zeros: 1.2 MB on disk, 1.1 GiB uint16, 2.25 GiB as float32
TIFF_BOMB_SIDE = 2048


# --- writers --------------------------------------------------------------------------------------------------------
def _hounsfield(shape: tuple[int, int, int] = (8, 8, 4), seed: int = 14) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, size=shape).astype(np.int16)  # (I, J, K)


def _series(folder: Path, number: int, hounsfield: np.ndarray | None = None, spacing=(1.0, 1.0, 2.0), **kwargs):
    """A classic CT series (one file per slice, in slice order) with fixed UIDs."""
    if folder.exists():
        shutil.rmtree(folder)
    hounsfield = _hounsfield() if hounsfield is None else hounsfield
    options = {"study_uid": f"{UID_ROOT}.1", "series_uid": f"{UID_ROOT}.2.{number}", "series_number": number, **kwargs}
    return write_dicom_series(folder, hounsfield, np.diag([*spacing, 1.0]), **options)


def _edit(path: Path, change: Callable[[Dataset], None]) -> None:
    dataset = pydicom.dcmread(path)
    change(dataset)
    dataset.save_as(path, enforce_file_format=True)


def _edit_all(paths: list[Path], change: Callable[[Dataset], None]) -> None:
    for path in paths:
        _edit(path, change)


def _set(**values) -> Callable[[Dataset], None]:
    def change(dataset: Dataset) -> None:
        for keyword, value in values.items():
            setattr(dataset, keyword, value)

    return change


def _fifo(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        os.mkfifo(path)


def _link(path: Path, target: str | Path) -> None:
    if not path.is_symlink():
        path.symlink_to(target)


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    affine = np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, path)


def _nifti_header(shape: tuple[int, ...], dtype=np.int16, affine: np.ndarray | None = None) -> nib.Nifti1Header:
    """A header as nibabel writes it, then given another shape (nibabel writes no data for it)."""
    affine = np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine
    image = nib.Nifti1Image(np.zeros((2, 2, 2), dtype=dtype), affine)
    image.set_sform(affine, code=1)
    header = image.header.copy()
    header.set_data_shape(shape)
    header["vox_offset"] = 352
    return header


def _patch_nifti(path: Path, **fields) -> None:
    """Rewrite header fields of an uncompressed .nii in place (nibabel's writer would repair them on save)."""
    raw = bytearray(path.read_bytes())
    header = nib.Nifti1Header(bytes(raw[:348]), check=False)
    for name, value in fields.items():
        header[name] = value
    raw[:348] = header.binaryblock
    path.write_bytes(bytes(raw))


def _numpy(path: Path, data: np.ndarray, sidecar: object = None, allow_pickle: bool = False) -> None:
    np.save(path, data, allow_pickle=allow_pickle)
    if sidecar is not None:
        path.with_suffix(".json").write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))


def _oct_volume(shape: tuple[int, int, int] = (16, 24, 6), seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(100, 4000, size=shape).astype(np.uint16)  # (lateral, axial, B)


def oct_dicom(path: Path, volume: np.ndarray, spacing=("0.004", "0.012"), thickness="0.24", frames=None) -> None:
    """A multi-frame Ophthalmic Tomography object: frames = B-scans, pixel measures in the shared groups."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPHTHALMIC_TOMOGRAPHY
    meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}.3"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = OPHTHALMIC_TOMOGRAPHY
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID = f"{UID_ROOT}.4"
    dataset.SeriesInstanceUID = f"{UID_ROOT}.5"
    dataset.Modality = "OPT"
    stack = np.ascontiguousarray(volume.transpose(2, 1, 0))  # (B-scan, axial rows, lateral columns)
    dataset.NumberOfFrames = frames if frames is not None else stack.shape[0]
    dataset.Rows, dataset.Columns = stack.shape[1], stack.shape[2]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    measures = Dataset()
    measures.PixelSpacing = list(spacing)
    measures.SliceThickness = thickness
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    dataset.SharedFunctionalGroupsSequence = [shared]
    dataset.PixelData = stack.tobytes()
    dataset.save_as(path, enforce_file_format=True)


def _pixel_data_offset(raw: bytes) -> int:
    """Where the (7FE0,0010) PixelData element starts in an explicit little-endian file."""
    return raw.rfind(struct.pack("<HH", 0x7FE0, 0x0010))


def deflate_bomb(path: Path, template: Path, inflated_bytes: int) -> None:
    """A Deflated Explicit VR Little Endian file whose dataset inflates to ``inflated_bytes`` of pixel data.

    The header comes from ``template`` (a real slice); the pixel data is zeros, compressed once per MiB after a full
    flush so the same compressed block can be repeated: a few MB on disk.
    """
    dataset = pydicom.dcmread(template)
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dataset.Rows = dataset.Columns = 16384
    del dataset.PixelData
    plain = Path(f"{path}.headers")
    dataset.save_as(plain, enforce_file_format=True)  # deflated by pydicom: the header elements only
    written = plain.read_bytes()
    plain.unlink()
    start = 144 + struct.unpack("<I", written[140:144])[0]  # preamble, DICM, group length element + its value
    body = zlib.decompress(written[start:], -zlib.MAX_WBITS)
    body += struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, inflated_bytes)  # PixelData of inflated_bytes
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = compressor.compress(body) + compressor.flush(zlib.Z_FULL_FLUSH)
    mebibyte = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)  # context-free: repeatable
    tail = compressor.flush()
    path.write_bytes(written[:start] + head + mebibyte * (inflated_bytes >> 20) + tail)


def tiff_bomb(path: Path) -> None:
    page = zlib.compress(bytes(TIFF_BOMB_SIDE * TIFF_BOMB_SIDE * 2), 9)  # one page of uint16 zeros
    tifffile.imwrite(
        path,
        (page for _ in range(TIFF_BOMB_PAGES)),  # already-encoded strips, one per page
        shape=(TIFF_BOMB_PAGES, TIFF_BOMB_SIDE, TIFF_BOMB_SIDE),
        dtype=np.uint16,
        compression="zlib",
        rowsperstrip=TIFF_BOMB_SIDE,
    )


# --- special files --------------------------------------------------------------------------------------------------
def special_file_cases(root: Path) -> list[Crafted]:
    special = root / "special"
    special.mkdir(exist_ok=True)
    for name in ("fifo.nii", "fifo.nii.gz", "fifo.npy", "fifo.dcm", "fifo.tif"):
        _fifo(special / name)
    _numpy(special / "sidecar_fifo.npy", _hounsfield())
    (special / "sidecar_fifo.json").unlink(missing_ok=True)
    _fifo(special / "sidecar_fifo.json")
    _numpy(special / "sidecar_folder.npy", _hounsfield())
    (special / "sidecar_folder.json").mkdir(exist_ok=True)
    _link(special / "zero.nii", "/dev/zero")
    _link(special / "urandom.npy", "/dev/urandom")
    _link(special / "zero.dcm", "/dev/zero")
    _link(special / "urandom.tif", "/dev/urandom")
    _link(special / "loop.nii", special / "loop.nii")
    _link(special / "dangling.nii.gz", special / "nowhere.nii.gz")
    (special / "folder.tif").mkdir(exist_ok=True)
    (special / "folder.nii.gz").mkdir(exist_ok=True)
    (special / "empty_series").mkdir(exist_ok=True)
    nested = special / "only_subfolders"
    (nested / "a" / "b").mkdir(parents=True, exist_ok=True)

    fifo_series = special / "series_with_fifo"
    _series(fifo_series, 1)
    _fifo(fifo_series / "IM99999.dcm")
    device_series = special / "series_with_dev_zero"
    _series(device_series, 1)
    _link(device_series / "IM99999.dcm", "/dev/zero")
    loop_series = special / "series_with_link_loop"
    _series(loop_series, 1)
    _link(loop_series / "IM99999.dcm", loop_series / "IM99999.dcm")
    cache = {"cache_dir": str(root / "cache")}
    refused = ("not_regular_file",)
    return [
        Crafted("ct_nifti_is_fifo", "ct", "special/fifo.nii", refused, seconds=SPECIAL),
        Crafted("ct_nifti_gz_is_fifo", "ct", "special/fifo.nii.gz", refused, seconds=SPECIAL),
        Crafted("ct_numpy_is_fifo", "ct", "special/fifo.npy", refused, seconds=SPECIAL),
        Crafted("ct_dicom_file_is_fifo", "ct", "special/fifo.dcm", refused, seconds=SPECIAL),
        Crafted("ct_numpy_sidecar_is_fifo", "ct", "special/sidecar_fifo.npy", refused, seconds=SPECIAL),
        Crafted("ct_numpy_sidecar_is_folder", "ct", "special/sidecar_folder.npy", refused),
        Crafted("ct_series_folder_holds_fifo", "ct", "special/series_with_fifo", refused, seconds=SPECIAL),
        Crafted("ct_series_with_fifo_cached", "ct", "special/series_with_fifo", refused, cache, seconds=SPECIAL),
        Crafted("ct_series_folder_holds_dev_zero", "ct", "special/series_with_dev_zero", refused, seconds=SPECIAL),
        Crafted("ct_series_dev_zero_cached", "ct", "special/series_with_dev_zero", refused, cache, seconds=SPECIAL),
        Crafted("ct_series_folder_holds_link_loop", "ct", "special/series_with_link_loop", ("missing_file",)),
        Crafted("ct_cell_is_dev_zero", "ct", "/dev/zero", refused, seconds=SPECIAL),
        Crafted("ct_cell_is_dev_urandom", "ct", "/dev/urandom", refused, seconds=SPECIAL),
        Crafted("ct_nifti_links_to_dev_zero", "ct", "special/zero.nii", refused, seconds=SPECIAL),
        Crafted("ct_numpy_links_to_dev_urandom", "ct", "special/urandom.npy", refused, seconds=SPECIAL),
        Crafted("ct_dicom_links_to_dev_zero", "ct", "special/zero.dcm", refused, seconds=SPECIAL),
        Crafted("ct_nifti_link_loop", "ct", "special/loop.nii", ("missing_file",)),
        Crafted("ct_nifti_dangling_link", "ct", "special/dangling.nii.gz", ("missing_file",)),
        Crafted("ct_folder_named_nifti", "ct", "special/folder.nii.gz", ("empty_series",)),
        Crafted("ct_empty_series_folder", "ct", "special/empty_series", ("empty_series",)),
        Crafted("ct_folder_of_empty_subfolders", "ct", "special/only_subfolders", ("empty_series",)),
        Crafted("oct_tiff_is_fifo", "oct", "special/fifo.tif", refused, seconds=SPECIAL),
        Crafted("oct_tiff_links_to_dev_urandom", "oct", "special/urandom.tif", refused, seconds=SPECIAL),
        Crafted("oct_dicom_links_to_dev_zero", "oct", "special/zero.dcm", refused, seconds=SPECIAL),
        Crafted("oct_folder_named_tiff", "oct", "special/folder.tif", refused),
        Crafted("oct_numpy_sidecar_is_fifo", "oct", "special/sidecar_fifo.npy", refused, seconds=SPECIAL),
    ]


# --- DICOM CT series ------------------------------------------------------------------------------------------------
def dicom_cases(root: Path) -> list[Crafted]:
    dicom = root / "dicom"
    dicom.mkdir(exist_ok=True)
    cases = [Crafted("ct_dicom_good_series", "ct", "dicom/good", (LOADS,))]
    _series(dicom / "good", 1)

    rescale = {  # RescaleSlope / RescaleIntercept that turn stored values into NaN, inf or huge "HU"
        "slope_nan": ({"RescaleSlope": "NaN"}, ("non_finite",)),
        "slope_1e308": ({"RescaleSlope": "1e308"}, ("non_finite",)),
        "slope_zero": ({"RescaleSlope": "0"}, ("bad_rescale",)),
        "slope_1e4": ({"RescaleSlope": "10000"}, ("implausible_values",)),
        "intercept_1e20": ({"RescaleIntercept": "1e20"}, ("implausible_values",)),
        "intercept_inf": ({"RescaleIntercept": "-inf"}, ("non_finite",)),
    }
    for name, (values, expect) in rescale.items():
        _edit_all(_series(dicom / name, 1), _set(**values))
        cases.append(Crafted(f"ct_dicom_rescale_{name}", "ct", f"dicom/{name}", expect))

    # The issue's case: 32^3 voxels of 90 mm, resampled whole to 3 mm = 960^3 float32 (3.5 GB) from an 80 KB folder.
    _series(dicom / "voxels_90mm", 1, np.full((32, 32, 32), 40, dtype=np.int16), spacing=(90.0, 90.0, 90.0))
    cases.append(Crafted("ct_dicom_90mm_voxels", "ct", "dicom/voxels_90mm", ("implausible_spacing", "too_large")))
    _series(dicom / "budget", 1, _hounsfield((64, 64, 8)))
    cases.append(Crafted("ct_dicom_over_budget", "ct", "dicom/budget", ("too_large",), {"max_decoded_mb": 0.1}))

    def huge_rows(dataset: Dataset) -> None:  # 65535 x 65535 x 4 slices declared over 128 bytes of pixels each
        dataset.Rows = dataset.Columns = 65535

    _edit_all(_series(dicom / "huge_rows", 1), huge_rows)
    cases.append(Crafted("ct_dicom_rows_columns_65535", "ct", "dicom/huge_rows", ("too_large",)))
    _edit_all(_series(dicom / "zero_rows", 1), _set(Rows=0))
    cases.append(Crafted("ct_dicom_zero_rows", "ct", "dicom/zero_rows", ("empty_volume",)))
    _edit_all(_series(dicom / "frames_2e9", 1), _set(NumberOfFrames=2_000_000_000))
    cases.append(Crafted("ct_dicom_number_of_frames_2e9", "ct", "dicom/frames_2e9", ("multiframe",)))

    files = _series(dicom / "nan_position", 1)
    _edit(files[1], _set(ImagePositionPatient=["0", "0", "NaN"]))
    cases.append(Crafted("ct_dicom_nan_position", "ct", "dicom/nan_position", ("bad_affine",)))
    _edit_all(_series(dicom / "inf_spacing", 1), _set(PixelSpacing=["inf", "1"]))
    cases.append(Crafted("ct_dicom_infinite_pixel_spacing", "ct", "dicom/inf_spacing", ("bad_affine",)))
    _edit_all(_series(dicom / "nan_orientation", 1), _set(ImageOrientationPatient=["NaN"] * 6))
    cases.append(Crafted("ct_dicom_nan_orientation", "ct", "dicom/nan_orientation", ("bad_affine",)))
    _series(dicom / "gap_1e6", 1, spacing=(1.0, 1.0, 1e6))
    cases.append(Crafted("ct_dicom_slices_1e6_mm_apart", "ct", "dicom/gap_1e6", ("implausible_spacing",)))
    _edit_all(_series(dicom / "tiny_pixels", 1), _set(PixelSpacing=["1e-7", "1e-7"]))
    cases.append(Crafted("ct_dicom_pixel_spacing_1e-7", "ct", "dicom/tiny_pixels", ("implausible_spacing",)))

    one = _series(dicom / "one_slice", 1, _hounsfield((8, 8, 1)))
    cases.append(Crafted("ct_dicom_one_slice", "ct", "dicom/one_slice", (LOADS,)))
    _edit(_series(dicom / "one_slice_no_thickness", 1, _hounsfield((8, 8, 1)))[0], _drop("SliceThickness"))
    cases.append(Crafted("ct_dicom_one_slice_no_thickness", "ct", "dicom/one_slice_no_thickness",
                         ("missing_geometry",)))  # fmt: skip
    _edit(_series(dicom / "one_slice_thick", 1, _hounsfield((8, 8, 1)))[0], _set(SliceThickness="1e9"))
    cases.append(Crafted("ct_dicom_one_slice_1e9_mm_thick", "ct", "dicom/one_slice_thick", ("implausible_spacing",)))
    del one

    files = _series(dicom / "truncated", 1)
    files[2].write_bytes(files[2].read_bytes()[:-40])
    cases.append(Crafted("ct_dicom_truncated_slice", "ct", "dicom/truncated", ("truncated_file",)))
    files = _series(dicom / "pixel_length_4g", 1)
    raw = bytearray(files[1].read_bytes())
    offset = _pixel_data_offset(bytes(raw))
    raw[offset + 8 : offset + 12] = struct.pack("<I", 0xFFFFFFF0)  # PixelData claims 4 GB
    files[1].write_bytes(bytes(raw))
    cases.append(Crafted("ct_dicom_pixel_length_4gb", "ct", "dicom/pixel_length_4g", ("truncated_file",)))

    files = _series(dicom / "deep_sequence", 1)
    sequence = struct.pack("<HH2sHI", 0x7FE1, 0x1010, b"SQ", 0, 0xFFFFFFFF)  # a private SQ of undefined length
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)  # holding one item of undefined length, and so on
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    files[0].write_bytes(files[0].read_bytes() + (sequence + item) * 3000 + close * 3000)  # after the pixels
    cases.append(Crafted("ct_dicom_sequences_nested_3000_deep", "ct", "dicom/deep_sequence", ("header_too_complex",)))

    files = _series(dicom / "many_elements", 1)
    private = [struct.pack("<HH2sH", 0x7FE1 + 2 * (i // 0xEFFF), 0x1000 + i % 0xEFFF, b"LO", 2) for i in range(300_000)]
    files[0].write_bytes(files[0].read_bytes() + b"ab".join(private) + b"ab")  # 3.6 MB of 12-byte private elements
    cases.append(Crafted("ct_dicom_300k_tiny_elements", "ct", "dicom/many_elements", ("header_too_complex",)))

    bomb_template = _series(dicom / "bomb_template", 1)[0]
    (dicom / "deflate_bomb").mkdir(exist_ok=True)
    deflate_bomb(dicom / "deflate_bomb" / "IM00000.dcm", bomb_template, inflated_bytes=16384 * 16384 * 2)
    shutil.rmtree(dicom / "bomb_template")
    cases.append(Crafted("ct_dicom_deflate_bomb_512mb", "ct", "dicom/deflate_bomb", ("too_large",),
                         {"max_decoded_mb": 256}))  # fmt: skip

    _edit_all(_series(dicom / "bits_64", 1), _set(BitsAllocated=64, BitsStored=64, HighBit=63))
    cases.append(Crafted("ct_dicom_bits_allocated_64", "ct", "dicom/bits_64", ("undecodable_pixels",)))
    _series(dicom / "two_series" / "a", 1)
    _series(dicom / "two_series" / "b", 2, _hounsfield(seed=15))
    cases.append(Crafted("ct_dicom_two_series_bare_folder", "ct", "dicom/two_series", ("mixed_series",)))
    cases.append(Crafted("ct_dicom_two_series_pick_2", "ct", "dicom/two_series#series=2", (LOADS,)))
    cases.append(Crafted("ct_dicom_two_series_pick_9", "ct", "dicom/two_series#series=9", ("missing_series",)))
    return cases


def _drop(keyword: str) -> Callable[[Dataset], None]:
    def change(dataset: Dataset) -> None:
        delattr(dataset, keyword)

    return change


# --- NIfTI ----------------------------------------------------------------------------------------------------------
def nifti_cases(root: Path) -> list[Crafted]:
    folder = root / "nifti"
    folder.mkdir(exist_ok=True)
    cases = [Crafted("ct_nifti_good", "ct", "nifti/good.nii.gz", (LOADS,))]
    _nifti(folder / "good.nii.gz", _hounsfield())

    # 40 KB of gzip declaring 1100 x 1000 x 1000 int16 voxels: nibabel allocates 2.2 GB before finding out.
    with gzip.open(folder / "huge_dims.nii.gz", "wb") as handle:
        handle.write(_nifti_header((1100, 1000, 1000)).binaryblock + bytes(4) + bytes(40_000))
    cases.append(Crafted("ct_nifti_gz_declares_2gb", "ct", "nifti/huge_dims.nii.gz", ("too_large",)))
    (folder / "huge_dims.nii").write_bytes(_nifti_header((30000, 30000, 10)).binaryblock + bytes(4) + bytes(1000))
    cases.append(Crafted("ct_nifti_declares_18gb", "ct", "nifti/huge_dims.nii", ("too_large",)))
    extension = _nifti_header((2, 2, 2))
    extension["vox_offset"] = 352 + 16
    body = extension.binaryblock + b"\x01\0\0\0" + struct.pack("<ii", 0x7FFFFFF0, 6) + bytes(8) + bytes(16)
    (folder / "extension_2gb.nii").write_bytes(body)
    with gzip.open(folder / "extension_2gb.nii.gz", "wb") as handle:
        handle.write(body)
    cases.append(Crafted("ct_nifti_extension_declares_2gb", "ct", "nifti/extension_2gb.nii", ("bad_extension",)))
    cases.append(Crafted("ct_nifti_gz_extension_declares_2gb", "ct", "nifti/extension_2gb.nii.gz", ("bad_extension",)))
    # 128^3 at 20 mm (a plausible voxel size) resampled to 3 mm: 853^3 float32 = 2.5 GB from a 10 KB file.
    _nifti(folder / "grid_20mm.nii.gz", np.full((128, 128, 128), -1000, np.int16), np.diag([20.0, 20.0, 20.0, 1.0]))
    cases.append(Crafted("ct_nifti_20mm_voxels_resample_to_2gb", "ct", "nifti/grid_20mm.nii.gz", ("too_large",)))

    _nifti(folder / "complex.nii", (_hounsfield() + 1j * _hounsfield(seed=2)).astype(np.complex64))
    cases.append(Crafted("ct_nifti_complex_voxels", "ct", "nifti/complex.nii", ("complex_data",)))
    rgb = np.zeros((8, 8, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    _nifti(folder / "rgb.nii", rgb)
    cases.append(Crafted("ct_nifti_rgb_voxels", "ct", "nifti/rgb.nii", ("unsupported_dtype",)))
    nan = _hounsfield().astype(np.float32)
    nan[2, 3, 1] = np.nan
    _nifti(folder / "nan.nii", nan)
    cases.append(Crafted("ct_nifti_nan_voxel", "ct", "nifti/nan.nii", ("non_finite",)))
    _nifti(folder / "huge_values.nii", np.full((8, 8, 4), 1e30, np.float32))
    cases.append(Crafted("ct_nifti_voxels_1e30", "ct", "nifti/huge_values.nii", ("implausible_values",)))
    _nifti(folder / "slope.nii", _hounsfield())
    _patch_nifti(folder / "slope.nii", scl_slope=1e30, scl_inter=0.0)
    cases.append(Crafted("ct_nifti_scl_slope_1e30", "ct", "nifti/slope.nii", ("non_finite", "implausible_values")))

    _nifti(folder / "zero_dim.nii", np.zeros((8, 8, 1), np.int16))
    _patch_nifti(folder / "zero_dim.nii", dim=[3, 8, 8, 0, 1, 1, 1, 1])
    cases.append(Crafted("ct_nifti_zero_dimension", "ct", "nifti/zero_dim.nii",
                         ("empty_volume", "header_data_mismatch")))  # fmt: skip
    _nifti(folder / "negative_dim.nii", _hounsfield())
    _patch_nifti(folder / "negative_dim.nii", dim=[3, 8, -8, 4, 1, 1, 1, 1])
    cases.append(Crafted("ct_nifti_negative_dimension", "ct", "nifti/negative_dim.nii", ("unreadable", "bad_header")))
    _nifti(folder / "nan_pixdim.nii", _hounsfield())
    _patch_nifti(folder / "nan_pixdim.nii", sform_code=0, qform_code=1, pixdim=[1, np.nan, 1, 2, 1, 1, 1, 1])
    cases.append(Crafted("ct_nifti_nan_qform_pixdim", "ct", "nifti/nan_pixdim.nii", ("bad_affine",)))
    _nifti(folder / "spacing_1e6.nii", _hounsfield(), np.diag([1e6, 1e6, 1e6, 1.0]))
    cases.append(Crafted("ct_nifti_spacing_1e6_mm", "ct", "nifti/spacing_1e6.nii", ("implausible_spacing",)))
    _nifti(folder / "spacing_1e-7.nii", _hounsfield(), np.diag([1e-7, 1e-7, 1e-7, 1.0]))
    cases.append(Crafted("ct_nifti_spacing_1e-7_mm", "ct", "nifti/spacing_1e-7.nii", ("implausible_spacing",)))
    _nifti(folder / "truncated.nii", _hounsfield())
    (folder / "truncated.nii").write_bytes((folder / "truncated.nii").read_bytes()[:400])
    cases.append(Crafted("ct_nifti_truncated", "ct", "nifti/truncated.nii", ("unreadable",)))
    _nifti(folder / "truncated.nii.gz", _hounsfield((32, 32, 16)))
    (folder / "truncated.nii.gz").write_bytes((folder / "truncated.nii.gz").read_bytes()[:2000])
    cases.append(Crafted("ct_nifti_gz_stream_cut", "ct", "nifti/truncated.nii.gz", ("unreadable",)))
    _nifti(folder / "four_d.nii", np.zeros((8, 8, 4, 3), np.int16))
    cases.append(Crafted("ct_nifti_three_volumes", "ct", "nifti/four_d.nii", ("not_3d",)))
    return cases


# --- NumPy + sidecar ------------------------------------------------------------------------------------------------
def numpy_cases(root: Path) -> list[Crafted]:
    folder = root / "numpy"
    folder.mkdir(exist_ok=True)
    good = {"spacing": [1.0, 1.0, 2.0]}
    _numpy(folder / "good.npy", _hounsfield(), good)
    cases = [Crafted("ct_numpy_good", "ct", "numpy/good.npy", (LOADS,))]

    header = np.lib.format.header_data_from_array_1_0(np.zeros((2, 2, 2), np.int16))
    header["shape"] = (100_000, 100_000, 100)
    with open(folder / "huge_shape.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(bytes(1000))
    (folder / "huge_shape.json").write_text(json.dumps(good))
    cases.append(Crafted("ct_numpy_header_declares_2tb", "ct", "numpy/huge_shape.npy", ("too_large",)))
    _numpy(folder / "truncated.npy", _hounsfield(), good)
    (folder / "truncated.npy").write_bytes((folder / "truncated.npy").read_bytes()[:-100])
    cases.append(Crafted("ct_numpy_truncated", "ct", "numpy/truncated.npy", ("truncated_file",)))
    _numpy(folder / "complex.npy", _hounsfield() + 1j * _hounsfield(seed=2), good)
    cases.append(Crafted("ct_numpy_complex", "ct", "numpy/complex.npy", ("complex_data",)))
    _numpy(folder / "objects.npy", np.array([[[{"a": 1}]]], dtype=object), good, allow_pickle=True)
    cases.append(Crafted("ct_numpy_pickled_objects", "ct", "numpy/objects.npy", ("unsupported_dtype",)))
    _numpy(folder / "named_fields.npy", np.zeros((4, 4, 4), dtype=[("Doe_Jane", "f4")]), good)
    cases.append(Crafted("ct_numpy_structured_dtype", "ct", "numpy/named_fields.npy", ("unsupported_dtype",)))
    _numpy(folder / "empty.npy", np.zeros((0, 8, 8), np.int16), good)
    cases.append(Crafted("ct_numpy_zero_size", "ct", "numpy/empty.npy", ("empty_volume",)))
    _numpy(folder / "huge_ints.npy", np.full((8, 8, 4), 2**40, np.int64), good)
    cases.append(Crafted("ct_numpy_values_2e40", "ct", "numpy/huge_ints.npy", ("implausible_values",)))
    _numpy(folder / "flat.npy", np.zeros((8, 8), np.int16), good)
    cases.append(Crafted("ct_numpy_two_dimensional", "ct", "numpy/flat.npy", ("not_3d",)))

    sidecars = {  # sidecar -> expected reason
        "orientation_name": ({"spacing": [1, 1, 2], "orientation": "Doe^Jane"}, "bad_orientation"),
        "nan_spacing": ('{"spacing": [NaN, 1, 2]}', "bad_affine"),
        "spacing_90mm": ({"spacing": [90, 90, 90]}, "implausible_spacing"),
        "bool_spacing": ({"spacing": [True, True, True]}, "bad_sidecar"),
        "string_affine": ({"affine": [["a"] * 4] * 4}, "bad_sidecar"),
        "ragged_affine": ({"affine": [[1, 0, 0], [0, 1, 0, 0], [0], 5]}, "bad_sidecar"),
        "not_json": ("{spacing: 1mm}", "bad_sidecar"),
        "not_an_object": ("[1, 1, 2]", "bad_sidecar"),
        "deep_nesting": ("[" * 100_000 + "]" * 100_000, "bad_sidecar"),
        "huge": (json.dumps({"spacing": [1, 1, 2], "padding": "x" * 3_000_000}), "too_large"),
    }
    for name, (sidecar, reason) in sidecars.items():
        _numpy(folder / f"sidecar_{name}.npy", _hounsfield(), sidecar)
        cases.append(Crafted(f"ct_numpy_sidecar_{name}", "ct", f"numpy/sidecar_{name}.npy", (reason,)))
    return cases


# --- OCT ------------------------------------------------------------------------------------------------------------
def oct_cases(root: Path) -> list[Crafted]:
    folder = root / "oct"
    folder.mkdir(exist_ok=True)
    volume = _oct_volume()
    tifffile.imwrite(folder / "good.tif", volume.transpose(2, 1, 0))
    oct_dicom(folder / "good.dcm", volume)
    cases = [
        Crafted("oct_tiff_good", "oct", "oct/good.tif", (LOADS,)),
        Crafted("oct_dicom_good", "oct", "oct/good.dcm", (LOADS,)),
    ]
    tiff_bomb(folder / "bomb.tif")
    cases.append(Crafted("oct_tiff_zlib_pages_decode_to_2gb", "oct", "oct/bomb.tif", ("too_large",)))
    tifffile.imwrite(folder / "budget.tif", _oct_volume((128, 128, 32)).transpose(2, 1, 0), compression="zlib")
    cases.append(Crafted("oct_tiff_over_budget", "oct", "oct/budget.tif", ("too_large",), {"max_decoded_mb": 1}))
    pages = [Image.fromarray(np.full((24, 16), 100 * index, np.uint16)) for index in range(1, 4)]
    pages.append(Image.fromarray(np.full((12, 16), 400, np.uint16)))  # a last B-scan of another size
    pages[0].save(folder / "two_sizes.tif", save_all=True, append_images=pages[1:])
    cases.append(Crafted("oct_tiff_pages_of_two_sizes", "oct", "oct/two_sizes.tif", ("multiple_series",)))
    nan = volume.astype(np.float32).transpose(2, 1, 0).copy()
    nan[1, 2, 3] = np.nan
    tifffile.imwrite(folder / "nan.tif", nan)
    cases.append(Crafted("oct_tiff_nan_pixel", "oct", "oct/nan.tif", ("non_finite",)))
    tifffile.imwrite(folder / "huge_values.tif", (volume * np.float32(1e34)).transpose(2, 1, 0))  # up to 4e37
    cases.append(Crafted("oct_tiff_values_4e37", "oct", "oct/huge_values.tif", ("implausible_values",)))
    tifffile.imwrite(folder / "complex.tif", (volume + 1j * volume[::-1]).astype(np.complex64).transpose(2, 1, 0))
    cases.append(Crafted("oct_tiff_complex", "oct", "oct/complex.tif", ("complex_data",)))
    tifffile.imwrite(folder / "rgb.tif", np.zeros((6, 24, 16, 3), np.uint8), photometric="rgb")
    cases.append(Crafted("oct_tiff_rgb", "oct", "oct/rgb.tif", ("not_grayscale",)))
    tifffile.imwrite(folder / "one_page.tif", np.zeros((24, 16), np.uint16))
    cases.append(Crafted("oct_tiff_one_page", "oct", "oct/one_page.tif", ("not_3d",)))
    tifffile.imwrite(folder / "truncated.tif", volume.transpose(2, 1, 0))
    (folder / "truncated.tif").write_bytes((folder / "truncated.tif").read_bytes()[:600])
    cases.append(Crafted("oct_tiff_truncated", "oct", "oct/truncated.tif", ("unreadable",)))
    tifffile.imwrite(folder / "constant.tif", np.full((6, 24, 16), 7, np.uint16))
    cases.append(Crafted("oct_tiff_constant", "oct", "oct/constant.tif", ("constant_volume",)))

    oct_dicom(folder / "frames_1e9.dcm", volume, frames=1_000_000_000)
    cases.append(Crafted("oct_dicom_declares_1e9_frames", "oct", "oct/frames_1e9.dcm", ("too_large",)))
    oct_dicom(folder / "nan_spacing.dcm", volume, spacing=("NaN", "0.012"))
    cases.append(Crafted("oct_dicom_nan_pixel_spacing", "oct", "oct/nan_spacing.dcm", ("bad_affine",)))
    oct_dicom(folder / "spacing_90mm.dcm", volume, thickness="90")
    cases.append(Crafted("oct_dicom_bscans_90mm_apart", "oct", "oct/spacing_90mm.dcm", ("implausible_spacing",)))
    oct_dicom(folder / "truncated.dcm", volume)
    (folder / "truncated.dcm").write_bytes((folder / "truncated.dcm").read_bytes()[:-300])
    cases.append(Crafted("oct_dicom_truncated", "oct", "oct/truncated.dcm", ("truncated_file",)))
    _nifti(folder / "complex.nii", (volume + 1j * volume[::-1]).astype(np.complex64))
    cases.append(Crafted("oct_nifti_complex", "oct", "oct/complex.nii", ("complex_data",)))
    nan_array = volume.astype(np.float32)
    nan_array[0, 0, 0] = np.inf
    _numpy(folder / "inf.npy", nan_array, {"spacing": [0.012, 0.004, 0.24]})
    cases.append(Crafted("oct_numpy_infinite_pixel", "oct", "oct/inf.npy", ("non_finite",)))
    cached = {"cache_dir": str(root / "cache")}
    cases.append(Crafted("oct_tiff_bomb_cached", "oct", "oct/bomb.tif", ("too_large",), cached))
    return cases


def cases(root: Path) -> list[Crafted]:
    """Every crafted CT / OCT input, written under ``root`` (see the module docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    return [*special_file_cases(root), *dicom_cases(root), *nifti_cases(root), *numpy_cases(root), *oct_cases(root)]
