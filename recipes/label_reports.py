"""Report -> label extraction (``medclip label-reports``): a manifest's reports -> added ``label:<finding>`` columns.

For data that has reports but no labels: a rule-based labeller (mentions + negation / uncertainty triggers, CheXpert
style; ``modalities/report/labeller``) reads each row's report and writes one column per finding of a vocabulary
(bundled ``chest_xray``, ``chest_ct``, ``ecg``, or your own YAML): ``1`` present, ``0`` absent, blank not mentioned,
and hedged findings by the ``uncertain`` policy (``blank`` / ``1`` / ``0``). The soft-label losses and zero-shot
evaluation then run on the labelled manifest as on hand-labelled data.

Outputs:
- ``out``: the same manifest, every column and row unchanged, with the label columns added (or replaced, with
  ``overwrite: true``); written to a temporary name and renamed, so it is never half written. It holds whatever the
  input held (report text included): it is your data file, keep it where the input lives;
- the summary JSON (``summary``, default ``<out>.summary.json``): counts per finding (positive / negative / uncertain /
  not mentioned) and the row numbers and reasons of unreadable reports; never report text, paths or identifiers.
  Logs carry the same counts only.

A row whose report is blank gets blank labels (counted as "no report"); a row whose report cannot be read (missing
file, FIFO, too large, not UTF-8) gets blank labels and is listed by row number and reason. Measured precision and
recall of the bundled vocabularies: docs/labeller.md.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from medclip.config import ConfigError
from medclip.data import SkipSummary
from medclip.data.manifest import LABEL_PREFIX
from medclip.eval.report import write_json
from medclip.types import ModalityError
from modalities.report.labeller import STATES, UNCERTAIN_POLICIES, ReportLabeller, label_value, load_vocabulary
from modalities.report.labeller.reading import read_report_cell
from modalities.report.sections import SECTION_NAMES

COMMAND = "label-reports"
HELP = "add label:<finding> columns to a manifest from its report text (negation/uncertainty-aware rule labeller)"
DEFAULT_CONFIG = "label_reports.yaml"
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}

logger = logging.getLogger("medclip.recipes.label_reports")


@dataclass
class Config:
    manifest: str = "data/manifest.csv"  # CSV, TSV or Parquet with a report column
    out: str = "runs/labelled/manifest.csv"  # the labelled manifest (.csv / .tsv / .parquet)
    summary: str = ""  # counts per finding as JSON; empty = next to out, "<out stem>.summary.json"
    vocabulary: str = "chest_xray"  # chest_xray | chest_ct | ecg, or a path to your own vocabulary YAML
    column: str = "report"  # the manifest column holding report text or .txt/.md paths
    root: str = ""  # folder for relative report paths; empty = the manifest's folder
    sections: list[str] = field(default_factory=lambda: ["findings", "impression"])  # as the report plugin; [] = all
    uncertain: str = "blank"  # hedged findings: blank (U-Ignore) | 1 (U-Ones) | 0 (U-Zeros)
    overwrite: bool = False  # replace existing label columns of the vocabulary's findings, and an existing out
    max_report_mb: float = 1.0  # one report's budget: a radiology report is a few kilobytes, labelling is ~linear
    progress: bool = True


def read_table(path: Path) -> pd.DataFrame:
    """A manifest as a table of text cells (CSV/TSV: every cell a string, blanks "", never "NA" -> NaN guessing)."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ConfigError(f"manifest {path}: unknown format {suffix!r}; use {', '.join(TABLE_SUFFIXES)}")
    if not path.is_file():
        raise ConfigError(f"manifest {path} does not exist or is not a file")
    separator = TABLE_SUFFIXES[suffix]
    try:
        if separator is None:
            return pd.read_parquet(path)
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=separator), [])
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise ConfigError(f"manifest {path}: columns appear more than once: {', '.join(repeated)}")
        return pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8-sig")
    except ConfigError:
        raise
    except Exception as error:  # pandas/pyarrow parse errors name lines and fields, never cell values
        raise ConfigError(f"manifest {path} could not be read ({type(error).__name__}: {error})") from error


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    separator = TABLE_SUFFIXES[path.suffix.lower()]
    try:
        if separator is None:
            table.to_parquet(temporary, index=False)
        else:
            table.to_csv(temporary, sep=separator, index=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _blank(cell: Any) -> bool:
    if cell is None or cell is pd.NA:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and not cell.strip()


def _check_config(cfg: Config) -> tuple[Path, Path, Path]:
    """The manifest, output and summary paths, after checking every option that needs no file."""
    if cfg.uncertain not in UNCERTAIN_POLICIES:
        raise ConfigError(f"uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}, got {cfg.uncertain!r}")
    unknown = [name for name in cfg.sections if name not in SECTION_NAMES]
    if unknown:
        raise ConfigError(f"sections: unknown section name(s) {unknown}; known: {', '.join(sorted(SECTION_NAMES))}")
    if not cfg.max_report_mb > 0:
        raise ConfigError(f"max_report_mb must be positive, got {cfg.max_report_mb}")
    out = Path(cfg.out).expanduser()
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(f"out names the labelled manifest file and must end in {', '.join(TABLE_SUFFIXES)}")
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"{out} exists; set overwrite: true to replace it, or choose another out")
    summary = Path(cfg.summary).expanduser() if cfg.summary else out.with_name(f"{out.stem}.summary.json")
    return Path(cfg.manifest).expanduser(), out, summary


def _label_columns(table: pd.DataFrame, labeller: ReportLabeller, cfg: Config) -> list[str]:
    """The columns to write; refuses to replace existing ones unless ``overwrite``."""
    if cfg.column not in table.columns:
        close = difflib.get_close_matches(cfg.column, [str(name) for name in table.columns], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"the manifest has no column {cfg.column!r} (set column: to the report column){hint}")
    columns = [f"{LABEL_PREFIX}{name}" for name in labeller.vocabulary.label_names]
    existing = [column for column in columns if column in table.columns]
    if existing and not cfg.overwrite:
        raise ConfigError(
            f"the manifest already has {', '.join(existing)}; set overwrite: true to replace "
            f"{'it' if len(existing) == 1 else 'them'} with extracted labels"
        )
    return columns


def main(cfg: Config) -> dict[str, float]:
    manifest_path, out, summary_path = _check_config(cfg)
    vocabulary = load_vocabulary(cfg.vocabulary)
    labeller = ReportLabeller(vocabulary, cfg.sections)
    table = read_table(manifest_path)
    columns = _label_columns(table, labeller, cfg)
    root = Path(cfg.root).expanduser() if cfg.root else manifest_path.parent

    names = vocabulary.label_names
    counts = {name: dict.fromkeys(STATES, 0) for name in names}
    values: dict[str, list[int | None]] = {name: [] for name in names}
    skipped = SkipSummary()
    no_report = 0
    cells = table[cfg.column].tolist()
    bar = tqdm(cells, desc="labelling reports", unit="report", disable=not cfg.progress)
    for row_number, cell in enumerate(bar, start=1):
        states = None
        if _blank(cell):
            no_report += 1
        else:
            try:
                states = labeller.states(read_report_cell(cell, root, cfg.max_report_mb))
            except ModalityError as error:
                skipped.add(row_number, cfg.column, error.reason, type(error).__name__)
        for name in names:
            if states is not None:
                counts[name][states[name]] += 1
            values[name].append(label_value(states[name], cfg.uncertain) if states is not None else None)

    labelled = table.copy()
    as_text = TABLE_SUFFIXES[out.suffix.lower()] is not None
    for name, column in zip(names, columns, strict=True):
        if as_text:  # CSV: "1" / "0" / "" like a hand-made manifest
            labelled[column] = ["" if value is None else str(value) for value in values[name]]
        else:  # Parquet: 1.0 / 0.0 / NaN
            labelled[column] = [math.nan if value is None else float(value) for value in values[name]]
    write_table(labelled, out)

    rows = len(cells)
    unreadable = skipped.total()
    summary = {
        "vocabulary": vocabulary.name,
        "uncertain_policy": cfg.uncertain,
        "sections": list(cfg.sections),
        "rows": rows,
        "rows_labelled": rows - no_report - unreadable,
        "rows_without_report": no_report,
        "rows_unreadable": unreadable,
        "columns": columns,
        "findings": counts,
        "skipped": skipped.to_dict(),
    }
    write_json(summary_path, summary)
    logger.info(
        "labelled %d of %d rows with vocabulary %s (%d without report, %d unreadable); counts in %s",
        rows - no_report - unreadable,
        rows,
        vocabulary.name,
        no_report,
        unreadable,
        summary_path.name,
    )
    return {
        "rows": float(rows),
        "rows_labelled": float(rows - no_report - unreadable),
        "rows_without_report": float(no_report),
        "rows_unreadable": float(unreadable),
    }
