"""End-to-end patient-data leak test (issue 8, "Patient data (PHI)").

Identifiers are planted in every input format a hospital export carries them in: DICOM headers (PatientName,
PatientID, PatientBirthDate, AccessionNumber, StudyDate, ReferringPhysicianName and a private tag) and DICOM folder
names, NIfTI file names and header ``descrip``, report text and report file names, an ``.h5ad`` obs column and obs
names, WFDB record names and header comments, and the manifest's ``patient_id`` / ``study_id`` columns. The real
code paths then run through the CLI: ingest -> pretrain (CT, report, ECG, expression; all-pairs CLIP) -> embed ->
retrieve (with a free-text query holding a name) -> zero-shot (binary, a prompt set written here).

Every file written outside the input folder (outputs, caches, the pseudonym key, ``$HOME``, ``$TMPDIR``, the working
directory, and any new file inside the input folder) and every captured log line, warning, stdout and stderr line is
then searched for every planted value: as UTF-8, UTF-16 LE and UTF-16 BE, case-insensitively, with DICOM's ``^``
separators as spaces and each name part on its own. Compressed containers (gzip, zip, Parquet, PNG text chunks,
HDF5) are searched after decoding too. Zero matches are allowed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import struct
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import anndata
import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from medclip.cli import main as cli
from modalities.ct.phantom import LABEL_NAMES, phantom_report
from modalities.ecg.leads import STANDARD_LEADS
from modalities.ecg.synthetic import generate_ecgs
from modalities.expression.synthetic import synthetic_counts, synthetic_gene_names
from modalities.volume.dicom_write import write_dicom_series
from modalities.volume.phantom import FINDINGS, chest_phantom

CT_SHAPE = (16, 16, 16)
CT_SPACING = (24.0, 24.0, 24.0)
ROWS_PER_KIND = 6  # DICOM CT, NIfTI CT, ECG, expression: 24 rows
ECG_SOURCE_HZ = 250.0
ECG_SECONDS = 2.0
PRIVATE_GROUP = 0x0011
LABEL_WORDS = {"Patient:"}  # parts of planted values that are report labels, not identifiers

# Fixed planted values (chance-free strings); per-row values are built from these stems.
QUERY_NAME = "Pellimond^Osgravia"  # a name inside the free-text retrieval query
REPORT_NAMES = ("Brannoch^Ulvetta", "Halvring^Tessavel", "Osgrave^Pellimondo")


def dicom_identifiers(index: int) -> dict[str, str]:
    return {
        "PatientName": "Zyxwortha^Quennel" if index == 0 else f"Zyxwortha^Quennel{chr(ord('a') + index)}",
        "PatientID": f"MRN482133{index:02d}",
        "PatientBirthDate": f"193704{index + 10:02d}",
        "AccessionNumber": f"ACC77812{index:02d}",
        "StudyDate": f"201709{index + 10:02d}",
        "ReferringPhysicianName": f"Drellisk^Ombrave{chr(ord('a') + index)}",
    }


def private_value(index: int) -> str:
    return f"PRIVQX55291{index:02d}"


def nifti_name(index: int) -> str:
    return f"Vexmoor_Ilsabet_MRN55091{index:03d}"


def nifti_descrip(index: int) -> str:
    return f"Vexmoor^Ilsabet MRN55091{index:03d} DOB 194109{index + 10:02d}"


def ecg_record_name(index: int) -> str:
    return f"Thornquill_MRN80451{index:03d}"


def ecg_comments(index: int) -> list[str]:
    return [f"Patient: Thornquill^Faelan{chr(ord('a') + index)}", f"MRN80451{index:03d} DOB 195208{index + 10:02d}"]


def obs_name(index: int) -> str:
    return f"OBSMRN973{index:05d}"


def donor_name(index: int) -> str:
    return f"Kestrova^Almund{chr(ord('a') + index)}"


def manifest_ids(row: int) -> tuple[str, str]:
    """(patient_id, study_id) cells: raw identifiers as a hospital manifest holds them."""
    return f"Jorvask^Pemberly MRN61{row:06d}", f"ACCSTUDY93{row:05d}"


def report_text(row: int, findings_text: str) -> str:
    """A report with a header full of identifiers, then the clinical text (the de-identifier must remove them)."""
    last, first = REPORT_NAMES[row % len(REPORT_NAMES)].split("^")
    return (
        f"Patient: {first} {last}\n"
        f"MRN: 66120{row:03d}   Accession: ACC66120{row:02d}\n"
        f"DOB: 03/{row + 1:02d}/1939\n"
        f"Exam date: 2019-03-{row + 1:02d}\n"
        f"Referring physician: Dr. Osgrave Pellimondo\n"
        f"{findings_text}\n"
        f"Discussed with Mrs. Halvring Tessavel on {row + 1} March 2019 at {phone(row)}."
    )


def phone(row: int) -> str:
    return f"555-867-{5300 + row}"


def report_planted(row: int) -> list[str]:
    """The identifiers ``report_text`` puts into row ``row``'s report (the names are in ``REPORT_NAMES``)."""
    return [f"66120{row:03d}", f"ACC66120{row:02d}", f"03/{row + 1:02d}/1939", f"2019-03-{row + 1:02d}", phone(row)]


def build_inputs(data: Path) -> tuple[Path, list[str]]:
    """Write every input under ``data``; returns the manifest and the planted values."""
    planted: list[str] = [QUERY_NAME, *REPORT_NAMES]
    rows: list[dict[str, str]] = []

    def add_row(modality_cells: dict[str, str], report: str, labels: dict[str, int] | None) -> None:
        row = len(rows)
        patient, study = manifest_ids(row)
        planted.extend([patient, study, *report_planted(row)])
        cells = {"patient_id": patient, "study_id": study, "ct": "", "ecg": "", "expression": "", "report": ""}
        cells.update(modality_cells)
        if row % 2:  # half the reports in files named after the patient, half inline
            report_file = data / "reports" / f"Brannoch_Ulvetta_ACCRPT44{row:04d}.txt"
            report_file.write_text(report, encoding="utf-8")
            planted.append(f"ACCRPT44{row:04d}")
            cells["report"] = f"reports/{report_file.name}"
        else:
            cells["report"] = report
        for finding in FINDINGS:
            cells[f"label:{LABEL_NAMES[finding]}"] = "" if labels is None else str(int(labels[finding]))
        rows.append(cells)

    (data / "reports").mkdir(parents=True)
    # CT as DICOM series, with identifiers in every header, a private tag and the folder name.
    for index in range(ROWS_PER_KIND):
        case = chest_phantom(index, shape=CT_SHAPE, spacing=CT_SPACING)
        identifiers = dicom_identifiers(index)
        planted.extend([*identifiers.values(), private_value(index)])
        folder = data / "dicom" / f"{identifiers['AccessionNumber']}_{identifiers['PatientID']}"
        files = write_dicom_series(folder, case.hounsfield, case.affine, identifiers=identifiers, shuffle_seed=index)
        for path in files:
            dataset = pydicom.dcmread(path)
            block = dataset.private_block(PRIVATE_GROUP, "QZ PHANTOM PRIVATE", create=True)
            block.add_new(0x10, "LO", private_value(index))
            dataset.save_as(path)
        add_row(
            {"ct": str(folder.relative_to(data))}, report_text(len(rows), phantom_report(case, index)), case.findings
        )
    # CT as NIfTI, with identifiers in the file name and the header description.
    (data / "nifti").mkdir()
    for index in range(ROWS_PER_KIND):
        case = chest_phantom(100 + index, shape=CT_SHAPE, spacing=CT_SPACING)
        image = nib.Nifti1Image(case.hounsfield, case.affine)
        image.set_sform(case.affine, code=1)
        image.set_qform(case.affine, code=1)
        image.header["descrip"] = nifti_descrip(index).encode()
        path = data / "nifti" / f"{nifti_name(index)}.nii.gz"
        nib.save(image, path)
        planted.extend([nifti_name(index), nifti_descrip(index), f"MRN55091{index:03d}", f"194109{index + 10:02d}"])
        add_row({"ct": f"nifti/{path.name}"}, report_text(len(rows), phantom_report(case, 100 + index)), case.findings)
    # ECG as WFDB records, with an identifier in the record name and the header comments.
    import wfdb

    (data / "ecg").mkdir()
    for index, record in enumerate(generate_ecgs(ROWS_PER_KIND, 3, sampling_rate=ECG_SOURCE_HZ, seconds=ECG_SECONDS)):
        name = ecg_record_name(index)
        wfdb.wrsamp(
            name,
            fs=ECG_SOURCE_HZ,
            units=["mV"] * len(STANDARD_LEADS),
            sig_name=list(STANDARD_LEADS),
            p_signal=np.ascontiguousarray(record.simulated.signal.T),  # (T, 12)
            fmt=["16"] * len(STANDARD_LEADS),
            adc_gain=[1000.0] * len(STANDARD_LEADS),
            baseline=[0] * len(STANDARD_LEADS),
            comments=ecg_comments(index),
            write_dir=str(data / "ecg"),
        )
        planted.extend([name, *ecg_comments(index), f"Thornquill^Faelan{chr(ord('a') + index)}"])
        add_row({"ecg": f"ecg/{name}.hea"}, report_text(len(rows), record.report), None)
    # Expression from an .h5ad whose obs names and an obs column hold identifiers.
    counts, cell_types = synthetic_counts(ROWS_PER_KIND, seed=5)
    obs = pd.DataFrame(
        {"donor_name": [donor_name(i) for i in range(ROWS_PER_KIND)], "cell_type": cell_types},
        index=[obs_name(i) for i in range(ROWS_PER_KIND)],
    )
    adata = anndata.AnnData(
        X=counts.astype(np.float32), obs=obs, var=pd.DataFrame(index=synthetic_gene_names(counts.shape[1]))
    )
    adata.write_h5ad(data / "cells.h5ad")
    for index in range(ROWS_PER_KIND):
        planted.extend([obs_name(index), donor_name(index)])
        # Half by row number (the recommended form), half by obs name: an identifier in the manifest cell itself.
        cell = f"cells.h5ad#row={index}" if index % 2 else f"cells.h5ad#{obs_name(index)}"
        add_row({"expression": cell}, report_text(len(rows), f"FINDINGS: Cell type {cell_types[index]}."), None)

    # Bad inputs named after patients: their rejections (log lines, skip summaries) must not quote names or paths.
    missing_nifti = f"nifti/{nifti_name(90)}.nii.gz"
    broken_series = data / "dicom" / f"ACC77812{90}_MRN482133{90}"
    broken_series.mkdir()
    for index in range(3):
        (broken_series / f"Zyxwortha_Quennel_{index}.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 7)
    truncated = data / "ecg" / f"{ecg_record_name(90)}.dat"
    source = data / "ecg" / f"{ecg_record_name(0)}"
    truncated.write_bytes(source.with_suffix(".dat").read_bytes()[:100])
    header = source.with_suffix(".hea").read_text().replace(ecg_record_name(0), ecg_record_name(90))
    truncated.with_suffix(".hea").write_text(header)
    planted.extend([nifti_name(90), broken_series.name, "Zyxwortha_Quennel", ecg_record_name(90), obs_name(90)])
    for cells in (
        {"ct": missing_nifti},
        {"ct": str(broken_series.relative_to(data))},
        {"ecg": f"ecg/{truncated.with_suffix('.hea').name}"},
        {"expression": f"cells.h5ad#{obs_name(90)}"},
    ):
        add_row(cells, report_text(len(rows), "FINDINGS: Unremarkable."), None)

    manifest = data / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest, sorted(set(planted))


def search_terms(planted: list[str]) -> list[str]:
    """Each value, its DICOM-name form with spaces, and each part of a composite value on its own."""
    terms: set[str] = set()
    for value in planted:
        terms.add(value)
        terms.add(value.replace("^", " "))
        for separator in ("^", " ", "_"):
            parts = [part for part in value.split(separator) if len(part) >= 6]
            if len(parts) > 1:
                terms.update(parts)
    return sorted(term for term in terms if term not in LABEL_WORDS)


def encodings(term: str) -> list[bytes]:
    lowered = term.lower()
    return [lowered.encode("utf-8"), lowered.encode("utf-16-le"), lowered.encode("utf-16-be")]


def png_text(data: bytes) -> bytes:
    """The decoded tEXt / zTXt / iTXt chunks of a PNG (metadata can hold strings; pixels are not searched)."""
    texts, position = [], 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        if kind == b"tEXt":
            texts.append(body)
        elif kind == b"zTXt":
            texts.append(zlib.decompress(body[body.index(b"\0") + 2 :]))
        elif kind == b"iTXt":
            keyword_end = body.index(b"\0")
            compressed = body[keyword_end + 1]
            rest = body[keyword_end + 3 :]
            rest = rest.split(b"\0", 2)[-1]
            texts.append(zlib.decompress(rest) if compressed else rest)
        position += 12 + length
    return b"\n".join(texts)


def decoded_forms(path: Path, data: bytes) -> list[bytes]:
    """The raw bytes plus what compressed containers hold, so compression cannot hide a value."""
    forms = [data]
    if data[:2] == b"\x1f\x8b":
        forms.append(gzip.decompress(data))
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            forms += [archive.read(name) for name in archive.namelist()] + ["\n".join(archive.namelist()).encode()]
    if data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        forms.append(json.dumps(table.to_pylist(), default=str).encode())
        forms.append(str(table.schema.metadata).encode())
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        forms.append(png_text(data))
    if data[:8] == b"\x89HDF\r\n\x1a\n":
        import h5py

        pieces: list[str] = []
        with h5py.File(path, "r") as handle:

            def visit(name: str, item) -> None:
                pieces.append(name)
                pieces.extend(f"{key}={value!r}" for key, value in item.attrs.items())
                if isinstance(item, h5py.Dataset):
                    pieces.append(repr(item[()]))

            handle.visititems(visit)
        forms.append("\n".join(pieces).encode())
    return [form.lower() for form in forms]


def leaks_in(forms: list[bytes], terms: list[str]) -> list[str]:
    return [term for term in terms if any(code in form for form in forms for code in encodings(term))]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """HOME, TMPDIR, caches and the working directory inside tmp_path, and a pseudonym key file created on first use
    under the temporary HOME: everything the run writes lands where the test searches."""
    home, temporary, work = tmp_path / "home", tmp_path / "tmp", tmp_path / "work"
    for folder in (home, temporary, work):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(home / ".config" / "matplotlib"))
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.delenv("MEDCLIP_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("MEDCLIP_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.chdir(work)
    return tmp_path


def write_prompt_set(path: Path) -> Path:
    data = {
        "name": "phantom_chest_binary",
        "description": "binary chest CT findings of the phantom set",
        "templates": ["{}.", "impression: {}."],
        "findings": {
            "pleural effusion": {
                "positive": ["pleural effusion", "fluid in the pleural space"],
                "negative": ["no pleural effusion", "no pleural fluid"],
            },
            "pulmonary nodule": {
                "positive": ["pulmonary nodule", "a nodule in the lung"],
                "negative": ["no pulmonary nodule", "no lung nodule"],
            },
        },
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_pretrain_config(path: Path, manifest: Path, caches: Path) -> Path:
    """A tiny all-modality pretraining config (all-pairs CLIP), written as a user would write theirs."""
    config = {
        "modalities": {
            "ct": {
                "size": [16, 16, 16],
                "spacing": list(CT_SPACING),
                "patch_size": [8, 8, 8],
                "cache_dir": str(caches / "ct"),
            },
            "report": {"width": 32, "layers": 1, "heads": 2, "max_tokens": 48, "vocab_size": 300, "min_frequency": 1},
            "ecg": {
                "width": 16,
                "depth": 2,
                "sampling_rate": 100.0,
                "seconds": ECG_SECONDS,
                "min_seconds": 1.0,
                "cache_dir": str(caches / "ecg"),
            },
            "expression": {"encoder": "mlp", "width": 32},
        },
        "model": {"embed_dim": 16},
        "loss": {"clip": {"weight": 1.0, "pairs": "all"}},
        "data": {"manifest": str(manifest), "val_fraction": 0.0, "test_fraction": 0.2},
        "train": {"steps": 3, "batch_size": 8, "warmup_steps": 1, "log_every": 1, "device": "cpu"},
    }
    path.write_text("# recipe: pretrain\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def test_planted_identifiers_never_reach_an_output_or_a_log(isolated, caplog, capfd):
    """capfd, not capsys: DataLoader worker processes write to the inherited file descriptors, which capfd sees."""
    root = isolated
    data = root / "data"
    manifest, planted = build_inputs(data)
    inputs_before = {path: path.stat().st_mtime_ns for path in data.rglob("*") if path.is_file()}
    prompts = write_prompt_set(root / "prompts.yaml")
    out, caches = root / "out", root / "caches"
    pretrain_config = write_pretrain_config(root / "pretrain.yaml", manifest, caches)
    checkpoint = out / "pretrain" / "checkpoint"

    caplog.clear()  # only what the run logs from here on is searched (writing the inputs is the test's doing)
    capfd.readouterr()
    caplog.set_level(logging.DEBUG)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            assert cli(["--verbose", "pretrain", "--config", str(pretrain_config), "--out", str(out / "pretrain")]) == 0
            common = [f"checkpoint={checkpoint}", f"manifest={manifest}", "device=cpu", "n_bootstrap=20"]
            # embedding in two worker threads and zero-shot in two worker processes: the loaders' own log lines
            # (threads log through this process; processes write to the captured file descriptors) are searched too
            embed = [
                "--verbose",
                "embed",
                "--out",
                str(out / "embed"),
                *common[:3],
                "num_workers=2",
                "worker_kind=thread",
            ]
            assert cli(embed) == 0
            retrieve = [
                "--verbose",
                "retrieve",
                "--out",
                str(out / "retrieve"),
                *common,
                "query_modality=report",
                "target_modality=ct",
                "split=all",
                "allow_seen_patients=true",
                "index=faiss",
                f"query_text=left pleural effusion in Mrs. {QUERY_NAME.split('^')[1]} {QUERY_NAME.split('^')[0]}",
                "top_k=3",
            ]
            assert cli(retrieve) == 0
            zero_shot = [
                "--verbose",
                "zero-shot",
                "--out",
                str(out / "zero_shot"),
                *common,
                "query_modality=ct",
                "text_modality=report",
                f"prompts={prompts}",
                "mode=binary",
                "split=all",
                "threshold_split=none",
                "allow_seen_patients=true",
                "num_workers=2",
            ]
            assert cli(zero_shot) == 0
    finally:
        logging.captureWarnings(False)
    captured = capfd.readouterr()

    # The run really used every modality: a leak test over a run that skipped the inputs would prove nothing.
    metrics = json.loads((out / "pretrain" / "metrics.json").read_text())
    bad_rows = {"missing_file", "bad_series_uid", "header_data_mismatch", "missing_observation"}
    assert set(metrics["data"]["counts"]) <= bad_rows  # the training split's share of the four bad rows
    skipped = json.loads((out / "embed" / "metrics.json").read_text())["skipped"]
    assert skipped["counts"] == dict.fromkeys(bad_rows, 1), skipped  # every bad row rejected once, with its reason
    embeddings = pd.read_parquet(out / "embed" / "embeddings")
    assert set(embeddings["modality"]) == {"ct", "ecg", "expression", "report"}
    assert embeddings["row"].nunique() == 4 * ROWS_PER_KIND
    assert embeddings["patient"].str.fullmatch(r"p-[0-9a-f]{16}").all()
    assert embeddings["study"].str.fullmatch(r"s-[0-9a-f]{16}").all()
    assert any((caches / "ct").rglob("*.npy")) and any((caches / "ecg").rglob("*"))
    key_files = list((root / "home").rglob("pseudonym.key"))
    assert len(key_files) == 1, "the pseudonym key file is created under the (temporary) HOME on first use"

    terms = search_terms(planted)
    assert len(terms) > 150

    # Every file written anywhere the run could write: everything under tmp_path except the untouched inputs.
    leaks: dict[str, list[str]] = {}
    searched = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path in (prompts, pretrain_config):
            continue
        if path in inputs_before and path.stat().st_mtime_ns == inputs_before[path]:
            continue  # an input file as the test wrote it (it holds the planted values on purpose)
        found = leaks_in(decoded_forms(path, path.read_bytes()), terms)
        searched += 1
        if path.name == "row_references.json" and path.parent.name == "local":
            # The one file whose job is to re-identify: row number -> input path (file and folder names hold planted
            # ids here). It lives in the output's local-only folder, next to a README forbidding sharing; nothing
            # else there may leak (browser.html and the thumbnails are searched like every other file).
            assert "must not be shared" in (path.parent / "README.txt").read_text()
            input_names = {part.lower() for input_path in inputs_before for part in input_path.parts}
            assert all(any(term.lower() in name for name in input_names) for term in found), "only input paths"
            continue
        if found:
            leaks[str(path.relative_to(root))] = found
    assert searched > 20
    assert not leaks, f"planted identifiers found in written files: {leaks}"

    # Every log line (all loggers at DEBUG, warnings included), and everything printed.
    log_lines = [record.getMessage() for record in caplog.records]
    log_lines += [str(record.args) for record in caplog.records if record.args]
    log_lines += [logging.Formatter().formatException(r.exc_info) for r in caplog.records if r.exc_info]
    assert any("medclip" in record.name for record in caplog.records)
    for name, text in (("log", "\n".join(log_lines)), ("stdout", captured.out), ("stderr", captured.err)):
        found = leaks_in([text.lower().encode("utf-8")], terms)
        assert not found, f"planted identifiers found in {name}: {found}"

    # Pseudonyms are not the raw ids, and the key file holds a key, not an identifier.
    raw_patients = {manifest_ids(row)[0] for row in range(4 * ROWS_PER_KIND)}
    assert not raw_patients & set(embeddings["patient"])
    assert embeddings.groupby("row")["patient"].nunique().eq(1).all()
    assert not leaks_in([key_files[0].read_bytes().lower()], terms)

    # Positive control: the same search finds every planted value in the inputs (DICOM headers, the gzip'ed NIfTI,
    # the HDF5 file, WFDB headers, file and folder names, the manifest), so a clean result above means something.
    input_forms = [name.lower().encode() for name in map(str, data.rglob("*"))]
    for path in data.rglob("*"):
        if path.is_file():
            input_forms += decoded_forms(path, path.read_bytes())
    as_planted = set(planted) - {QUERY_NAME, *REPORT_NAMES}  # the query is typed on the command line
    as_planted |= {part for name in REPORT_NAMES for part in name.split("^")}  # reports hold "First Last"
    assert as_planted <= set(leaks_in(input_forms, sorted(as_planted)))


def test_the_search_sees_through_encodings_and_containers(tmp_path):
    """The searcher finds a value in UTF-16 and inside gzip, zip, Parquet (compressed), PNG text and HDF5 files."""
    import h5py
    import pyarrow as pa
    import pyarrow.parquet as pq
    from matplotlib import pyplot

    value = "Zyxwortha^Quennel"
    terms = search_terms([value])
    assert {"Zyxwortha^Quennel", "Zyxwortha Quennel", "Zyxwortha", "Quennel"} <= set(terms)
    samples = {
        "le.txt": ("x " + value + " y").encode("utf-16-le"),
        "be.txt": ("x " + value.upper() + " y").encode("utf-16-be"),
        "spaces.txt": b"name: zyxwortha quennel",
        "a.gz": gzip.compress(value.encode()),
    }
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inner.json", json.dumps({"name": value * 50}))
    pq.write_table(pa.table({"patient": [value] * 200}), tmp_path / "a.parquet", compression="zstd")
    figure = pyplot.figure()
    figure.savefig(tmp_path / "a.png", metadata={"Title": value * 20})
    pyplot.close(figure)
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        handle.create_dataset("names", data=np.array([value.encode()] * 100), compression="gzip")
    for path in tmp_path.iterdir():
        assert "Zyxwortha" in leaks_in(decoded_forms(path, path.read_bytes()), terms), path.name
