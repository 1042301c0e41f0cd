"""Fuzzing the readers through the real data pipeline: corrupted files mixed into good ones (issue 8, "Bad input").

Each format writes small good files with its real writer (pydicom, nibabel, wfdb, anndata, tifffile, plain UTF-8),
then corrupts copies with a seeded RNG over corruption kinds (truncate at a random offset, flip random bytes, zero a
header region, edit a header field, duplicate genes, ...). All rows go into one manifest, which runs through
``Manifest.from_dataframe`` -> ``ManifestDataset`` (construction + loading every row) and, for reports, through
``collate_samples``. The checks:

- nothing escapes: construction and every ``__getitem__`` return, within a time limit (no hang);
- every bad file gets exactly one ``SkipRecord`` (row, column, reason), raised on purpose by the reader
  (``error_class == "ModalityError"``, never the dataset's catch-all for a stray ``struct.error``/``IndexError``);
- its reason is the one the corruption predicts; where a corruption can legitimately leave a readable file (a flipped
  byte in pixel data or in JPEG entropy data) the row may instead load, and then it must have the good shape;
- every good file loads, and the per-reason counts of the summary equal the tally of the outcomes.
"""

from __future__ import annotations

import shutil
import signal
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medclip.data import Manifest, ManifestDataset, SkipSummary
from medclip.data.pseudonym import Pseudonymizer
from medclip.types import Modality

USED = "used"  # the outcome of a row that loaded
FILE_TIME_LIMIT_S = 60  # a whole format's run; a reader stuck in a loop on a corrupt file fails the test here


@dataclass(frozen=True)
class Case:
    """One manifest row: its cell, what was done to the file, and the outcomes it may legitimately have."""

    cell: str
    kind: str  # "good" or the corruption applied
    allowed: frozenset[str]  # reason codes, and/or USED


def good(cell: str) -> Case:
    return Case(cell, "good", frozenset({USED}))


def bad(cell: str, kind: str, *outcomes: str) -> Case:
    return Case(cell, kind, frozenset(outcomes))


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) when a reader loops on a corrupt file."""

    def expired(signum, frame):
        raise TimeoutError(f"the fuzz run did not finish within {seconds} s: a reader hangs on a corrupt input")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def truncate(path: Path, offset: int) -> None:
    path.write_bytes(path.read_bytes()[:offset])


def flip_bytes(path: Path, rng: np.random.Generator, start: int, stop: int, count: int = 1) -> None:
    """XOR ``count`` distinct bytes in [start, stop) with non-zero values (each flip really changes its byte)."""
    data = bytearray(path.read_bytes())
    for position in rng.choice(np.arange(start, stop), size=count, replace=False):
        data[position] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))


def overwrite(path: Path, offset: int, payload: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + len(payload)] = payload
    path.write_bytes(bytes(data))


def run_pipeline(
    cases: list[Case], plugin: Modality, root: Path, shape_of: Callable[[dict], tuple]
) -> tuple[SkipSummary, dict[int, tuple]]:
    """Manifest -> ManifestDataset -> every row loaded; returns the summary and row -> loaded shape."""
    table = pd.DataFrame(
        {"patient_id": [f"patient-{index}" for index in range(len(cases))], plugin.name: [c.cell for c in cases]}
    )
    manifest = Manifest.from_dataframe(table, [plugin.name], root, pseudonymizer=Pseudonymizer(b"fuzz-key" * 4))
    loaded: dict[int, tuple] = {}
    with time_limit(FILE_TIME_LIMIT_S), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # libraries warn about the very corruption under test
        dataset = ManifestDataset(manifest, {plugin.name: plugin}, transforms={})
        summary = SkipSummary().merge(dataset.summary)
        for index in range(len(dataset)):
            sample = dataset[index]
            if "skipped" in sample:
                summary.add(*sample["skipped"])
            else:
                loaded[sample["row"]] = shape_of(sample)
    return summary, loaded


def check_outcomes(cases: list[Case], summary: SkipSummary, loaded: dict[int, tuple], good_shape: tuple) -> Counter:
    """The assertions of the module docstring; returns the tally of outcomes per corruption kind, for the report."""
    records: dict[int, list] = {}
    for record in summary.records:
        records.setdefault(record.row_number, []).append(record)
    expected_counts: Counter = Counter()
    tally: Counter = Counter()
    for row_number, case in enumerate(cases, start=1):
        where = f"row {row_number} ({case.kind})"
        if row_number in loaded:
            assert row_number not in records, f"{where} both loaded and skipped"
            assert USED in case.allowed, f"{where} loaded, but the corruption must be rejected"
            assert loaded[row_number] == good_shape, f"{where} loaded with shape {loaded[row_number]}"
            tally[(case.kind, USED)] += 1
            continue
        found = records.get(row_number, [])
        assert len(found) == 1, f"{where}: expected one rejection, got {found} (good rows must load)"
        record = found[0]
        assert record.column != "" and record.reason, f"{where}: rejection without column or reason: {record}"
        assert record.reason in case.allowed, f"{where}: reason {record.reason!r} not in {sorted(case.allowed)}"
        assert record.error_class in ("ModalityError", "FileNotFoundError"), (
            f"{where}: {record.error_class} escaped the reader (reason {record.reason!r}): it needs a reason code"
        )
        expected_counts[record.reason] += 1
        tally[(case.kind, record.reason)] += 1
    assert summary.counts() == dict(expected_counts)
    assert summary.total() == sum(expected_counts.values())
    assert sum(case.kind == "good" for case in cases) <= len(loaded)
    return tally


def tally_report(tally: Counter) -> str:
    return ", ".join(f"{kind}->{outcome}: {count}" for (kind, outcome), count in sorted(tally.items()))


# --- DICOM CT series ---------------------------------------------------------------------------------------------
CT_SERIES_REASONS = {  # what a damaged header can legitimately turn into (every one a reader reason code)
    "not_dicom", "truncated_file", "bad_series_uid", "bad_header", "no_pixel_data", "undecodable_pixels",
    "missing_geometry", "inconsistent_orientation", "inconsistent_size", "inconsistent_spacing", "bad_affine",
    "duplicate_positions", "missing_slices", "irregular_spacing", "gantry_tilt", "multiframe", "not_grayscale",
    "mixed_series", "no_valid_series", "unsupported_transfer_syntax", "quarantined_modality",
    "quarantined_burned_in_annotation", "empty_series",
}  # fmt: skip
PIXEL_BYTES = 8 * 8 * 2  # one 8 x 8 uint16 slice: PixelData is the last element of every file


def dicom_cases(root: Path, rng: np.random.Generator, n_good: int, n_bad: int) -> list[Case]:
    from modalities.volume.dicom_write import write_dicom_series

    template = root / "template"
    hounsfield = rng.integers(-1000, 1000, size=(8, 8, 4)).astype(np.int16)  # (I, J, K)
    write_dicom_series(template, hounsfield, np.diag([0.8, 0.8, 2.5, 1.0]))
    kinds = ["truncate_pixels", "truncate_header", "flip_pixels", "flip_header", "zero_magic", "drop_slice",
             "junk_file"]  # fmt: skip
    cases = []
    for index in range(n_good + n_bad):
        folder = root / f"series{index:03d}"
        shutil.copytree(template, folder)
        if index < n_good:
            cases.append(good(folder.name))
            continue
        kind = kinds[index % len(kinds)]
        files = sorted(folder.iterdir())
        target = files[int(rng.integers(len(files)))]
        size = target.stat().st_size
        if kind == "truncate_pixels":  # cut inside PixelData: the file ends inside an element
            truncate(target, int(rng.integers(size - PIXEL_BYTES, size)))
            cases.append(bad(folder.name, kind, "truncated_file"))
        elif kind == "truncate_header":  # anywhere before the pixels: the file lost tags, possibly mid-value
            truncate(target, int(rng.integers(0, size - PIXEL_BYTES)))
            cases.append(bad(folder.name, kind, "not_dicom", "truncated_file", "bad_series_uid", "no_pixel_data"))
        elif kind == "flip_pixels":  # stored values change; the series is still a readable series
            flip_bytes(target, rng, size - PIXEL_BYTES, size, count=3)
            cases.append(bad(folder.name, kind, USED))
        elif kind == "flip_header":  # any tag, length or VR byte: rejected for some reason, or still a good series
            flip_bytes(target, rng, 132, size - PIXEL_BYTES)
            cases.append(bad(folder.name, kind, USED, *CT_SERIES_REASONS))
        elif kind == "zero_magic":  # the "DICM" marker after the preamble
            overwrite(target, 128, b"\0\0\0\0")
            cases.append(bad(folder.name, kind, "not_dicom"))
        elif kind == "drop_slice":  # an inner slice lost: a gap of twice the spacing
            inner = sorted(files, key=lambda path: float(__import__("pydicom").dcmread(path).ImagePositionPatient[2]))
            inner[int(rng.integers(1, len(inner) - 1))].unlink()
            cases.append(bad(folder.name, kind, "missing_slices"))
        else:  # a stray non-DICOM file in the series folder
            (folder / "notes.bin").write_bytes(rng.bytes(int(rng.integers(0, 300))))
            cases.append(bad(folder.name, kind, "not_dicom"))
    shutil.rmtree(template)
    return cases


def test_fuzz_dicom_ct_series(tmp_path):
    from modalities.ct import CTModality

    cases = dicom_cases(tmp_path, np.random.default_rng(801), n_good=10, n_bad=130)
    summary, loaded = run_pipeline(cases, CTModality(), tmp_path, lambda sample: tuple(sample["ct"].shape))
    tally = check_outcomes(cases, summary, loaded, good_shape=(8, 8, 4))
    assert summary.counts()["truncated_file"] >= 18 and summary.counts()["not_dicom"] >= 36, tally_report(tally)


# --- NIfTI -------------------------------------------------------------------------------------------------------
NIFTI_HEADER_BYTES = 348
NIFTI_DATA_OFFSET = 352


def nifti_cases(root: Path, rng: np.random.Generator, n_good: int, n_bad: int) -> list[Case]:
    import struct

    import nibabel as nib

    volume = rng.integers(-1000, 1000, size=(8, 8, 4)).astype(np.int16)  # int16: a flipped byte cannot make a NaN
    image = nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.5, 1.0]))
    image.header.set_sform(image.affine, 1)
    template = root / "template.nii"
    nib.save(image, template)
    size = template.stat().st_size
    assert size == NIFTI_DATA_OFFSET + volume.nbytes
    edits = {  # kind -> (header offset, new bytes, expected reason)
        "zero_codes": (252, b"\0" * 4, "missing_affine"),  # qform_code and sform_code 0: no patient space
        "zero_sform": (280, b"\0" * 48, "bad_affine"),  # sform_code 1 but an all-zero sform
        "bad_datatype": (70, struct.pack("<h", 9999), "unreadable"),
        "five_dims": (40, struct.pack("<8h", 5, 8, 8, 4, 1, 1, 1, 1), "not_3d"),
        "smaller_dim": (44, struct.pack("<h", 2), "header_data_mismatch"),  # 8 x 8 x 2: loads scrambled without check
        "larger_dim": (44, struct.pack("<h", 400), "unreadable"),
        "far_vox_offset": (108, struct.pack("<f", 1e6), "unreadable"),
        "zero_magic": (344, b"\0" * 4, "unreadable"),
    }
    kinds = [*edits, "truncate_header", "truncate_data", "flip_descrip", "flip_data", "flip_header"]
    cases = []
    for index in range(n_good + n_bad):
        path = root / f"volume{index:03d}.nii"
        shutil.copyfile(template, path)
        if index < n_good:
            cases.append(good(path.name))
            continue
        kind = kinds[index % len(kinds)]
        if kind in edits:
            offset, payload, reason = edits[kind]
            overwrite(path, offset, payload)
            cases.append(bad(path.name, kind, reason))
        elif kind == "truncate_header":
            truncate(path, int(rng.integers(0, NIFTI_HEADER_BYTES)))
            cases.append(bad(path.name, kind, "unreadable"))
        elif kind == "truncate_data":
            truncate(path, int(rng.integers(NIFTI_DATA_OFFSET, size)))
            cases.append(bad(path.name, kind, "unreadable"))
        elif kind == "flip_descrip":  # free text fields (descrip, aux_file): no meaning to the reader
            flip_bytes(path, rng, 148, 252, count=4)
            cases.append(bad(path.name, kind, USED))
        elif kind == "flip_data":
            flip_bytes(path, rng, NIFTI_DATA_OFFSET, size, count=4)
            cases.append(bad(path.name, kind, USED))
        else:  # any header byte: rejected with a reason, or (unused field, dtype of the same size) still 8 x 8 x 4
            flip_bytes(path, rng, 0, NIFTI_HEADER_BYTES)
            reasons = ("unreadable", "missing_affine", "bad_affine", "not_3d", "header_data_mismatch", "non_finite")
            cases.append(bad(path.name, kind, USED, *reasons))
    template.unlink()
    return cases


def test_fuzz_nifti_headers(tmp_path):
    from modalities.ct import CTModality

    cases = nifti_cases(tmp_path, np.random.default_rng(802), n_good=12, n_bad=130)
    summary, loaded = run_pipeline(cases, CTModality(), tmp_path, lambda sample: tuple(sample["ct"].shape))
    tally = check_outcomes(cases, summary, loaded, good_shape=(8, 8, 4))
    assert summary.counts()["header_data_mismatch"] >= 10, tally_report(tally)


# --- WFDB ECG ----------------------------------------------------------------------------------------------------
ECG_RATE = 250
WFDB_HEADER_REASONS = ("bad_header", "header_data_mismatch", "missing_file", "unsupported_format", "unreadable",
                       "no_known_leads", "missing_leads", "too_short", "missing_sampling_rate", "unknown_units",
                       "duplicate_lead", "mixed_sampling_rates", "non_finite", "implausible_sampling_rate",
                       "implausible_amplitude", "too_large")  # fmt: skip


def wfdb_cases(root: Path, rng: np.random.Generator, n_good: int, n_bad: int) -> list[Case]:
    import wfdb

    time = np.arange(ECG_RATE) / ECG_RATE  # 1 s
    signal_mv = np.stack([np.sin(2 * np.pi * 1.3 * time), 0.5 * np.cos(2 * np.pi * 2.1 * time)], axis=1)  # (T, 2)
    kinds = ["truncate_dat", "extend_dat", "flip_dat", "longer_sig_len", "shorter_sig_len", "wrong_checksum",
             "missing_dat", "garbage_header", "truncate_header"]  # fmt: skip
    cases = []
    for index in range(n_good + n_bad):
        name = f"rec{index:03d}"
        wfdb.wrsamp(name, fs=ECG_RATE, units=["mV", "mV"], sig_name=["I", "II"], p_signal=signal_mv, fmt=["16", "16"],
                    adc_gain=[1000.0, 1000.0], baseline=[0, 0], write_dir=str(root))  # fmt: skip
        header, data = root / f"{name}.hea", root / f"{name}.dat"
        if index < n_good:
            cases.append(good(header.name))
            continue
        kind = kinds[index % len(kinds)]
        size = data.stat().st_size
        lines = header.read_text().splitlines()
        record_fields = lines[0].split()  # name, signals, fs, samples
        if kind == "truncate_dat":
            truncate(data, int(rng.integers(0, size)))
        elif kind == "extend_dat":  # more than one frame (4 bytes) beyond what the header declares
            data.write_bytes(data.read_bytes() + rng.bytes(int(rng.integers(5, 400))))
        elif kind == "flip_dat":  # one changed sample: the header checksum of its lead no longer matches
            flip_bytes(data, rng, 0, size)
        elif kind in ("longer_sig_len", "shorter_sig_len"):
            change = int(rng.integers(2, 100))
            record_fields[3] = str(ECG_RATE + change if kind == "longer_sig_len" else ECG_RATE - change)
            header.write_text("\n".join([" ".join(record_fields), *lines[1:]]) + "\n")
        elif kind == "wrong_checksum":
            fields = lines[1].split()
            fields[6] = str((int(fields[6]) + int(rng.integers(1, 1000))) % 65536)
            header.write_text("\n".join([lines[0], " ".join(fields), *lines[2:]]) + "\n")
        elif kind == "missing_dat":
            data.unlink()
        elif kind == "garbage_header":
            header.write_bytes(rng.bytes(int(rng.integers(1, 200))))
        else:
            truncate(header, int(rng.integers(0, header.stat().st_size)))
        if kind == "garbage_header":
            cases.append(bad(header.name, kind, *WFDB_HEADER_REASONS))
        elif kind == "truncate_header":  # a cut inside a signal line's optional fields (gain, units, checksum,
            # description) leaves a valid WFDB header: that lead's name is gone and the record loads without it
            cases.append(bad(header.name, kind, USED, *WFDB_HEADER_REASONS))
        else:
            cases.append(bad(header.name, kind, "missing_file" if kind == "missing_dat" else "header_data_mismatch"))
    return cases


def test_fuzz_wfdb_records(tmp_path):
    from modalities.ecg import ECGModality
    from modalities.ecg.config import ECGConfig

    cases = wfdb_cases(tmp_path, np.random.default_rng(803), n_good=12, n_bad=117)
    config = ECGConfig(leads=["I", "II"], sampling_rate=ECG_RATE, seconds=1.0, min_seconds=0.5, notch_hz=0.0)
    summary, loaded = run_pipeline(cases, ECGModality(config), tmp_path, lambda sample: tuple(sample["ecg"].shape))
    tally = check_outcomes(cases, summary, loaded, good_shape=(2, ECG_RATE))
    assert summary.counts()["header_data_mismatch"] >= 6 * 13, tally_report(tally)


# --- h5ad expression ---------------------------------------------------------------------------------------------
GENES = [f"GENE{index}" for index in range(12)]
H5AD_REASONS = ("unreadable", "non_finite", "normalization_mismatch", "empty_observation", "duplicate_genes",
                "missing_layer", "missing_observation", "external_link", "not_anndata", "unsupported_encoding",
                "shape_mismatch", "corrupt_sparse", "complex_values", "unsupported_dtype", "too_large",
                "implausible_values")  # fmt: skip


def write_h5ad(path: Path, counts: np.ndarray, genes: list[str]) -> None:
    import anndata as ad

    obs = pd.DataFrame(index=[f"cell-{index}" for index in range(counts.shape[0])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about the duplicate gene names written on purpose
        ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)


def h5ad_cases(root: Path, rng: np.random.Generator, n_good: int, n_bad: int) -> list[Case]:
    kinds = ["duplicate_genes", "truncate", "zero_signature", "flip_any", "nan_value", "negative_value", "all_zero",
             "row_out_of_range"]  # fmt: skip
    cases = []
    for index in range(n_good + n_bad):
        path = root / f"cells{index:03d}.h5ad"
        counts = rng.integers(0, 20, size=(1, len(GENES))).astype(np.float32)  # (1, G) raw counts
        counts[0, 0] += 1  # never an all-zero observation by chance
        kind = "good" if index < n_good else kinds[index % len(kinds)]
        genes = list(GENES)
        if kind == "duplicate_genes":
            genes[int(rng.integers(1, len(genes)))] = genes[0]
        elif kind == "nan_value":
            counts[0, int(rng.integers(len(GENES)))] = np.nan
        elif kind == "negative_value":
            counts[0, int(rng.integers(len(GENES)))] = -3.0
        elif kind == "all_zero":
            counts[:] = 0
        write_h5ad(path, counts, genes)
        cell = f"{path.name}#row={1 if kind == 'row_out_of_range' else 0}"
        size = path.stat().st_size
        if kind == "truncate":
            truncate(path, int(rng.integers(0, size)))
        elif kind == "zero_signature":  # the HDF5 superblock signature
            overwrite(path, 0, b"\0" * 8)
        elif kind == "flip_any":
            flip_bytes(path, rng, 0, size, count=int(rng.integers(1, 4)))
        expected = {"good": (USED,), "duplicate_genes": ("duplicate_genes",), "truncate": ("unreadable",),
                    "zero_signature": ("unreadable",), "flip_any": (USED, *H5AD_REASONS),
                    "nan_value": ("non_finite",), "negative_value": ("normalization_mismatch",),
                    "all_zero": ("empty_observation",), "row_out_of_range": ("missing_observation",)}  # fmt: skip
        cases.append(Case(cell, kind, frozenset(expected[kind])))
    return cases


def test_fuzz_h5ad_files(tmp_path):
    from modalities.expression import ExpressionModality
    from modalities.expression.config import ExpressionConfig

    cases = h5ad_cases(tmp_path, np.random.default_rng(804), n_good=12, n_bad=120)
    plugin = ExpressionModality(ExpressionConfig(normalization="counts"))
    summary, loaded = run_pipeline(cases, plugin, tmp_path, lambda sample: tuple(sample["expression"].shape))
    tally = check_outcomes(cases, summary, loaded, good_shape=(len(GENES),))
    assert summary.counts()["duplicate_genes"] == 15 and summary.counts()["unreadable"] >= 30, tally_report(tally)


# --- TIFF slides -------------------------------------------------------------------------------------------------
SLIDE_PATCHES, SLIDE_PATCH_SIZE = 4, 32
SLIDE_REASONS = ("unreadable", "unreadable_level", "no_mpp", "no_tissue", "out_of_bounds")


def tiff_cases(root: Path, rng: np.random.Generator, n_good: int, n_bad: int) -> list[Case]:
    import tifffile

    from modalities.wsi.synthetic import render_tissue, tissue_type_map, write_slide

    image = render_tissue(tissue_type_map(128, 128, rng, tissue_fraction=0.95), rng)  # (128, 128, 3) uint8
    template = root / "template.tiff"
    write_slide(template, image, mpp=0.5, levels=1, tile=64)  # one level: the thumbnail reads every tile
    with tifffile.TiffFile(template) as handle:
        tiles = list(zip(handle.pages[0].dataoffsets, handle.pages[0].databytecounts, strict=True))
    size = template.stat().st_size
    kinds = ["zero_tile", "truncate", "zero_magic", "flip_tile", "flip_any"]
    cases = []
    for index in range(n_good + n_bad):
        path = root / f"slide{index:03d}.tiff"
        shutil.copyfile(template, path)
        if index < n_good:
            cases.append(good(path.name))
            continue
        kind = kinds[index % len(kinds)]
        offset, count = tiles[int(rng.integers(len(tiles)))]
        if kind == "zero_tile":  # a tile whose bytes are not JPEG any more
            overwrite(path, int(offset), b"\0" * int(count))
            cases.append(bad(path.name, kind, "unreadable_level"))
        elif kind == "truncate":
            truncate(path, int(rng.integers(0, size)))
            cases.append(bad(path.name, kind, "unreadable", "unreadable_level"))
        elif kind == "zero_magic":
            overwrite(path, 0, b"\0" * 4)
            cases.append(bad(path.name, kind, "unreadable"))
        elif kind == "flip_tile":  # JPEG decoders may decode damaged entropy data into other pixels
            flip_bytes(path, rng, int(offset), int(offset + count), count=int(rng.integers(1, 8)))
            cases.append(bad(path.name, kind, USED, "unreadable_level", "no_tissue"))
        else:
            flip_bytes(path, rng, 0, size, count=int(rng.integers(1, 4)))
            cases.append(bad(path.name, kind, USED, *SLIDE_REASONS))
    template.unlink()
    return cases


def test_fuzz_tiff_slides(tmp_path):
    from modalities.wsi import WSIConfig, WSIModality
    from modalities.wsi.slide import close_slides

    cases = tiff_cases(tmp_path, np.random.default_rng(805), n_good=10, n_bad=100)
    config = WSIConfig(patch_size=SLIDE_PATCH_SIZE, mpp=0.5, max_patches=SLIDE_PATCHES, thumbnail_size=64)
    try:
        # A damaged JPEG tile can decode into other pixels and so change how many tissue patches the grid finds:
        # a loaded slide must give (N, S, S, 3) patches; good slides give all SLIDE_PATCHES of them.
        summary, loaded = run_pipeline(cases, WSIModality(config), tmp_path, lambda sample: tuple(sample["wsi"].shape))
    finally:
        close_slides()
    good_rows = [row for row, case in enumerate(cases, start=1) if case.kind == "good"]
    assert all(loaded[row][0] == SLIDE_PATCHES for row in good_rows)
    patches = {row: shape[1:] for row, shape in loaded.items() if 1 <= shape[0] <= SLIDE_PATCHES}
    tally = check_outcomes(cases, summary, patches, good_shape=(SLIDE_PATCH_SIZE, SLIDE_PATCH_SIZE, 3))
    assert len(patches) == len(loaded)
    assert summary.counts()["unreadable_level"] >= 40 and summary.counts()["unreadable"] >= 20, tally_report(tally)


# --- report text files -------------------------------------------------------------------------------------------
REPORT = "FINDINGS: Clear lungs. No effusion; heart size normal (café-au-lait spot noted).\nIMPRESSION: Normal.\n"


def report_cases(root: Path, rng: np.random.Generator, n_good: int, n_bad: int) -> list[Case]:
    encoded = REPORT.encode("utf-8")
    accent = encoded.index("é".encode())  # a 2-byte character: cutting after its first byte leaves invalid UTF-8
    kinds = ["invalid_utf8", "nul_byte", "cut_multibyte", "empty", "whitespace_only", "latin1", "random_bytes",
             "flip_any"]  # fmt: skip
    cases = []
    for index in range(n_good + n_bad):
        path = root / f"report{index:03d}.txt"
        kind = "good" if index < n_good else kinds[index % len(kinds)]
        position = int(rng.integers(0, len(encoded)))
        data = {
            "good": encoded,
            "invalid_utf8": encoded[:position] + bytes([int(rng.integers(0xF8, 0x100))]) + encoded[position:],
            "nul_byte": encoded[:position] + b"\0" + encoded[position:],
            "cut_multibyte": encoded[: accent + 1],
            "empty": b"",
            "whitespace_only": b" \n\t\r\n  ",
            "latin1": REPORT.encode("latin-1"),  # "é" as the lone byte 0xE9
            "random_bytes": b"\xff" + rng.bytes(int(rng.integers(1, 200))),  # 0xFF never occurs in UTF-8
            "flip_any": encoded,
        }[kind]
        path.write_bytes(data)
        if kind == "flip_any":
            flip_bytes(path, rng, 0, len(data), count=int(rng.integers(1, 4)))
        expected = {"good": (USED,), "empty": ("empty_report",), "whitespace_only": ("empty_report",),
                    "nul_byte": ("binary_file",),
                    "flip_any": (USED, "not_utf8", "binary_file")}.get(kind, ("not_utf8",))  # fmt: skip
        cases.append(Case(path.name, kind, frozenset(expected)))
    return cases


def test_fuzz_report_files(tmp_path):
    from modalities.report import ReportModality

    cases = report_cases(tmp_path, np.random.default_rng(806), n_good=12, n_bad=120)
    plugin = ReportModality()
    summary, loaded = run_pipeline(cases, plugin, tmp_path, lambda sample: (type(sample["report"]).__name__,))
    tally = check_outcomes(cases, summary, loaded, good_shape=("str",))
    not_text = summary.counts()["not_utf8"] + summary.counts()["binary_file"]
    assert not_text >= 75 and summary.counts()["empty_report"] == 30, tally_report(tally)
