"""The manifest: one table row per study, read from CSV or Parquet and pseudonymised at ingest.

Columns (DESIGN.md, "Data: the manifest"): ``patient_id`` (required), ``study_id`` (optional, default: the row
number), ``split`` (optional train / val / test; blank = patient-hash split), one column per modality the run uses
(a path, or inline text), ``label:<finding>`` (1 / 0 / blank, also true/false/yes/no), ``target:<name>`` (a
continuous value such as ejection fraction, age or a gene score: a decimal number, blank or "nan" for unknown) and
``site`` (optional).

Patient and study identifiers are replaced by keyed pseudonyms as each row is read; the ``Manifest`` keeps only the
pseudonyms and the row number, so nothing downstream (logs, caches, checkpoints, indexes) can leak them. Row numbers
are 1-based data rows: row 1 is the first line after the header.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .pseudonym import Pseudonymizer
from .summary import SkipSummary

logger = logging.getLogger("medclip.data")

PATIENT_COLUMN = "patient_id"
STUDY_COLUMN = "study_id"
SPLIT_COLUMN = "split"
SITE_COLUMN = "site"
LABEL_PREFIX = "label:"
TARGET_PREFIX = "target:"
SPLITS = ("train", "val", "test")
LABEL_VALUES = {"1": 1.0, "true": 1.0, "yes": 1.0, "0": 0.0, "false": 0.0, "no": 0.0}
# A plain decimal number: no thousands separators, no decimal comma, no "inf", no Python-only forms ("1_000", "0x1A").
# A cell that does not match is rejected ("bad_target") rather than guessed: "55,3" may be 55.3 or 553.
TARGET_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
FLOAT32_MAX = float(np.finfo(np.float32).max)
UNKNOWN_TARGET_TEXT = "nan"  # written by pandas / numpy for a missing float; read as unknown, like a blank cell


class ManifestError(ValueError):
    """The manifest as a whole is unusable (unreadable file, missing required column, patient leakage)."""


@dataclass
class ManifestRow:
    """One study after ingest: pseudonyms instead of identifiers.

    Attributes:
        row_number: 1-based data row in the manifest, the only way error messages point at a row.
        patient: patient pseudonym ("p-...").
        study: study pseudonym ("s-..."), from ``study_id`` or, when blank, from the row number.
        split: the explicit ``split`` cell (train / val / test), or None to use the patient-hash split.
        site: the ``site`` cell (institution or scanner), or None.
        cells: modality name -> the raw cell (a path or inline text), None where blank.
        labels: (K,) float, 1 / 0 / NaN for unknown, in the order of ``Manifest.label_names``.
        targets: (T,) float32 continuous values, NaN for unknown, in the order of ``Manifest.target_names``.
    """

    row_number: int
    patient: str
    study: str
    split: str | None
    site: str | None
    cells: dict[str, str | None]
    labels: np.ndarray
    targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


@dataclass
class Manifest:
    """The rows a run can use, plus what ingest rejected.

    Attributes:
        rows: accepted rows; rejected ones (no patient, bad label, bad target, bad split) are only in ``summary``.
        modalities: the modality columns this manifest was read for.
        label_names: findings, from the ``label:<finding>`` columns, in column order.
        root: folder that relative paths in modality cells are resolved against.
        summary: ingest rejections and ignored columns; datasets built on this manifest start from it.
        total_rows: data rows in the table, accepted or not (the denominator of ``max_skip_fraction``).
        source_hash: sha256 of the manifest file's bytes (of its CSV form for in-memory tables), for provenance.
        key_fingerprint: which pseudonym key was used (see ``Pseudonymizer.key_fingerprint``).
        target_names: continuous targets, from the ``target:<name>`` columns, in column order.
    """

    rows: list[ManifestRow]
    modalities: tuple[str, ...]
    label_names: tuple[str, ...]
    root: Path
    summary: SkipSummary = field(default_factory=SkipSummary)
    total_rows: int = 0
    source_hash: str = ""
    key_fingerprint: str = ""
    target_names: tuple[str, ...] = ()

    def manifest_hash(self) -> str:
        """sha256 (hex) of the manifest's bytes, recorded with every run so results trace back to their data."""
        return self.source_hash

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def from_dataframe(
        cls,
        table: pd.DataFrame,
        modalities: Sequence[str],
        root: str | os.PathLike | None = None,
        *,
        pseudonymizer: Pseudonymizer | None = None,
        source_hash: str | None = None,
        normalize_patient_ids: bool = False,
    ) -> Manifest:
        """Validate and pseudonymise an in-memory table (recipes that build their manifest in code use this).

        Args:
            table: one row per study, columns as in the module docstring.
            modalities: the modality columns the run uses; each must be a column of ``table``.
            root: folder for relative paths; defaults to the current directory.
            pseudonymizer: defaults to ``Pseudonymizer.from_environment()``.
            source_hash: provenance hash; defaults to the sha256 of the table written as CSV.
            normalize_patient_ids: treat ids that differ only by letter case or spacing as one patient. Without it,
                such ids stay different patients and a warning counts them (never quoting them).

        Raises:
            ManifestError: when ``patient_id`` or a modality column is missing, or a column name is repeated.
        """
        columns = [str(column) for column in table.columns]
        _check_columns(columns, modalities)
        pseudonymizer = pseudonymizer if pseudonymizer is not None else Pseudonymizer.from_environment()
        if source_hash is None:
            source_hash = hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()
        label_columns = _prefixed_columns(columns, LABEL_PREFIX)
        target_columns = _prefixed_columns(columns, TARGET_PREFIX)
        summary = SkipSummary()
        _record_unknown_columns(columns, modalities, [*label_columns, *target_columns], summary)

        rows = []
        records = table.to_dict(orient="records")
        _warn_about_case_variant_ids(records, normalize_patient_ids)
        patient_key = _normalized_patient_id if normalize_patient_ids else str.strip
        for row_number, record in enumerate(records, start=1):
            row = _parse_row(
                row_number, record, modalities, label_columns, target_columns, pseudonymizer, summary, patient_key
            )
            if row is not None:
                rows.append(row)
        return cls(
            rows=rows,
            modalities=tuple(modalities),
            label_names=tuple(column[len(LABEL_PREFIX) :] for column in label_columns),
            root=Path(root) if root is not None else Path.cwd(),
            summary=summary,
            total_rows=len(records),
            source_hash=source_hash,
            key_fingerprint=pseudonymizer.key_fingerprint,
            target_names=tuple(column[len(TARGET_PREFIX) :] for column in target_columns),
        )


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file, read in chunks so large manifests need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(
    path: str | os.PathLike,
    modalities: Sequence[str],
    root: str | os.PathLike | None = None,
    *,
    pseudonymizer: Pseudonymizer | None = None,
    normalize_patient_ids: bool = False,
) -> Manifest:
    """Read a CSV or Parquet manifest, validate it and pseudonymise its identifiers.

    CSV cells are read as text and blanks stay missing (no "NA" -> NaN guessing: "NA" could be a real report).

    Args:
        path: ``.csv`` / ``.tsv`` or ``.parquet`` / ``.pq`` file.
        modalities: the modality columns the run uses.
        root: folder for relative paths in modality cells; defaults to the manifest's folder.
        pseudonymizer: defaults to ``Pseudonymizer.from_environment()``.
        normalize_patient_ids: see ``Manifest.from_dataframe``.

    Raises:
        ManifestError: unreadable file, unknown format, missing ``patient_id`` or modality column, repeated column.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist or is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            separator = "\t" if suffix == ".tsv" else ","
            _check_csv_header(path, separator)
            table = pd.read_csv(
                path, sep=separator, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8-sig"
            )
        elif suffix in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            raise ManifestError(f"manifest {path}: unknown format {suffix!r}; use .csv, .tsv or .parquet")
    except ManifestError:
        raise
    except Exception as error:  # pandas/pyarrow parse errors name lines and fields, never cell values
        raise ManifestError(f"manifest {path} could not be read ({type(error).__name__}: {error})") from error
    manifest = Manifest.from_dataframe(
        table,
        modalities,
        root if root is not None else path.parent,
        pseudonymizer=pseudonymizer,
        source_hash=file_sha256(path),
        normalize_patient_ids=normalize_patient_ids,
    )
    logger.info(
        "manifest %s: %d of %d rows accepted, %d findings, %d continuous targets, modalities %s",
        path.name,
        len(manifest.rows),
        manifest.total_rows,
        len(manifest.label_names),
        len(manifest.target_names),
        ", ".join(manifest.modalities),
    )
    return manifest


def _check_csv_header(path: Path, separator: str) -> None:
    """pandas renames a repeated header to "ct.1"; catch the repetition itself so the user fixes the header."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle, delimiter=separator), [])
    seen = set()
    for column in header:
        if column in seen:
            raise ManifestError(f"manifest {path}: column {column!r} appears more than once")
        seen.add(column)


def _closest(name: str, valid: Sequence[str]) -> str | None:
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return match[0] if match else None


def _check_columns(columns: Sequence[str], modalities: Sequence[str]) -> None:
    if len(set(columns)) != len(columns):
        repeated = sorted({column for column in columns if columns.count(column) > 1})
        raise ManifestError(f"manifest columns appear more than once: {', '.join(repeated)}")
    for required in (PATIENT_COLUMN, *modalities):
        if required not in columns:
            closest = _closest(required, columns)
            hint = f"; did you mean {closest!r}?" if closest else f"; columns are: {', '.join(columns)}"
            what = "the required column" if required == PATIENT_COLUMN else "the column of modality"
            raise ManifestError(f"manifest has no {what} {required!r}{hint}")


def _prefixed_columns(columns: Sequence[str], prefix: str) -> list[str]:
    """The ``<prefix><name>`` columns with a non-empty name, in column order."""
    return [column for column in columns if column.startswith(prefix) and len(column) > len(prefix)]


def _normalized_patient_id(text: str) -> str:
    """The id with letter case and runs of spacing removed: "ab 12", " AB  12" and "Ab 12" are one patient."""
    return " ".join(text.split()).casefold()


def _warn_about_case_variant_ids(records: Sequence[dict[str, Any]], normalizing: bool) -> None:
    """Warn when distinct patient ids differ only by case or spacing: they would split one patient across splits.

    Only counts are logged, never an id.
    """
    variants: dict[str, set[str]] = {}
    for record in records:
        text = (_cell_text(record.get(PATIENT_COLUMN)) or "").strip()
        if text:
            variants.setdefault(_normalized_patient_id(text), set()).add(text)
    groups = sum(len(spellings) > 1 for spellings in variants.values())
    if not groups:
        return
    if normalizing:
        logger.warning("%d patient ids were written with other case or spacing elsewhere; merged (normalized)", groups)
    else:
        logger.warning(
            "%d patient ids also appear with other letter case or spacing and are treated as different patients, "
            "which can put one patient in two splits; set data.normalize_patient_ids: true if they are the same",
            groups,
        )


def _registered_modalities() -> set[str]:
    """Names of every registered modality plugin: columns a manifest may hold for runs other than this one."""
    from .. import list_modalities

    return set(list_modalities())


def _record_unknown_columns(
    columns: Sequence[str], modalities: Sequence[str], value_columns: Sequence[str], summary: SkipSummary
) -> None:
    """Warn about, and list in the summary, every column the run will not use: never ignore one silently."""
    known = {PATIENT_COLUMN, STUDY_COLUMN, SPLIT_COLUMN, SITE_COLUMN, *modalities, *value_columns}
    other_modalities = _registered_modalities()
    for column in columns:
        if column in known:
            continue
        if column in other_modalities:
            # Another modality's column (a manifest shared by several runs): not a misspelled label or target.
            summary.ignore_column(column, None)
            logger.info("manifest column %r holds modality %r, which this run does not use; ignored", column, column)
            continue
        name = column.split(":", 1)[-1]
        candidates = sorted(known | {LABEL_PREFIX + name, TARGET_PREFIX + name})
        closest = _closest(column, candidates)
        summary.ignore_column(column, closest)
        hint = f"; did you mean {closest!r}?" if closest else ""
        logger.warning("manifest column %r is not used by this run and is ignored%s", column, hint)


def _cell_text(value: Any) -> str | None:
    """A cell as text, None when blank; Parquet numbers print as CSV would ("12", not "12.0")."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    text = str(value)
    return text if text != "" else None


def _parse_label(value: Any) -> float | None:
    """1 / 0 / true / false / yes / no -> 1.0 / 0.0, blank -> NaN; anything else -> None (a "bad_label")."""
    text = _cell_text(value)
    if text is None or not text.strip():
        return math.nan
    text = text.strip().lower()
    if text in ("1.0", "0.0"):
        text = text[0]
    return LABEL_VALUES.get(text)


def _parse_target(value: Any) -> float | None:
    """A decimal number -> float, blank or "nan" -> NaN (unknown); anything else -> None (a "bad_target").

    Infinite values, and values beyond float32's range (the dtype of ``ManifestRow.targets``), are rejected: no
    clinical target is that large, so such a cell is a data error, never rounded to infinity.
    """
    text = _cell_text(value)
    if text is None or not text.strip():
        return math.nan
    text = text.strip()
    if text.lower() == UNKNOWN_TARGET_TEXT:
        return math.nan
    if not TARGET_NUMBER.fullmatch(text):
        return None
    number = float(text)
    return number if abs(number) <= FLOAT32_MAX else None


def _parse_row(
    row_number: int,
    record: dict[str, Any],
    modalities: Sequence[str],
    label_columns: Sequence[str],
    target_columns: Sequence[str],
    pseudonymizer: Pseudonymizer,
    summary: SkipSummary,
    patient_key: Callable[[str], str] = str.strip,
) -> ManifestRow | None:
    """Validate and pseudonymise one row; problems go to ``summary`` (with no cell value) and reject the row."""
    # Identifiers are stripped: " 123" and "123" are the same patient, and must get the same pseudonym.
    patient_text = patient_key(_cell_text(record[PATIENT_COLUMN]) or "")
    problems = []
    if not patient_text:
        problems.append((PATIENT_COLUMN, "missing_patient_id"))
    labels = np.full(len(label_columns), np.nan, dtype=np.float32)
    for index, column in enumerate(label_columns):
        value = _parse_label(record[column])
        if value is None:
            problems.append((column, "bad_label"))
        else:
            labels[index] = value
    targets = np.full(len(target_columns), np.nan, dtype=np.float32)
    for index, column in enumerate(target_columns):
        value = _parse_target(record[column])
        if value is None:
            problems.append((column, "bad_target"))
        else:
            targets[index] = value
    split = (_cell_text(record.get(SPLIT_COLUMN)) or "").strip().lower() or None
    if split is not None and split not in SPLITS:
        problems.append((SPLIT_COLUMN, "bad_split"))
    for column, reason in problems:
        summary.add(row_number, column, reason)
    if problems:
        return None

    study_text = (_cell_text(record.get(STUDY_COLUMN)) or "").strip() or f"row-{row_number}"
    site = (_cell_text(record.get(SITE_COLUMN)) or "").strip() or None
    return ManifestRow(
        row_number=row_number,
        patient=pseudonymizer.pseudonym(patient_text, "patient"),
        study=pseudonymizer.pseudonym(study_text, "study"),
        split=split,
        site=site,
        cells={name: _cell_text(record[name]) for name in modalities},
        labels=labels,
        targets=targets,
    )
