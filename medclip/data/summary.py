"""What was skipped and why: ``SkipSummary`` and the ``max_skip_fraction`` guard.

Bad input never stops a run and is never dropped silently (DESIGN.md, "Non-negotiables"): every unusable manifest row
is recorded here with its row number, the column that failed and a short reason code, and logged once. The record
holds no cell values, because a cell can be a path or a report holding a patient's name; row numbers and reason codes
are enough to find and fix the row in the manifest.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

from ..errors import MedclipError

logger = logging.getLogger("medclip.data")


class SkipRecord(NamedTuple):
    """One unusable (row, column): what ``ManifestDataset.__getitem__`` puts in its skip marker.

    Attributes:
        row_number: 1-based data row of the manifest (the header is not counted).
        column: the manifest column that failed ("" when the problem is the row as a whole, e.g. "no_modality").
        reason: a short machine-readable code ("missing_file", "unreadable", "bad_label", ...).
        error_class: the exception class behind it ("" when the row was rejected by validation alone).
    """

    row_number: int
    column: str
    reason: str
    error_class: str = ""


class TooManySkippedError(MedclipError, RuntimeError):
    """More rows were unusable than ``max_skip_fraction`` allows: the manifest (or its root) is probably wrong."""


class SkipSummary:
    """Collects skipped rows and ignored manifest columns for one run.

    Records are de-duplicated on (row, column, reason), so the same unreadable file met in every epoch, or the same
    ingest rejection merged from the train and validation datasets, is counted and logged once.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[int, str, str], SkipRecord] = {}
        self.ignored_columns: dict[str, str | None] = {}  # column -> closest valid name, or None

    def add(self, row_number: int, column: str, reason: str, error_class: str = "") -> bool:
        """Record a skip and log it at WARNING the first time it is seen; returns whether it was new."""
        record = SkipRecord(int(row_number), column, reason, error_class)
        if not self._insert(record):
            return False
        where = f", column {column!r}" if column else ""
        cause = f", {error_class}" if error_class else ""
        logger.warning("manifest row %d%s: skipped (%s%s)", record.row_number, where, reason, cause)
        return True

    def add_markers(self, records: Iterable[SkipRecord | tuple]) -> int:
        """Add skip records (e.g. ``batch["skipped"]`` from ``collate_samples``); returns how many were new."""
        return sum(self.add(*record) for record in records)

    def ignore_column(self, column: str, closest: str | None) -> None:
        """Record a manifest column that the run does not use, with the valid name it probably meant."""
        self.ignored_columns[column] = closest

    def merge(self, other: SkipSummary) -> SkipSummary:
        """Add another summary's records and ignored columns into this one (without logging them again)."""
        for record in other.records:
            self._insert(record)
        for column, closest in other.ignored_columns.items():
            self.ignored_columns.setdefault(column, closest)
        return self

    def _insert(self, record: SkipRecord) -> bool:
        key = (record.row_number, record.column, record.reason)
        if key in self._records:
            return False
        self._records[key] = record
        return True

    @property
    def records(self) -> list[SkipRecord]:
        """All records, sorted by row number then column."""
        return sorted(self._records.values())

    @property
    def skipped_rows(self) -> set[int]:
        """Row numbers with at least one problem (a row failing in two columns counts once here)."""
        return {record.row_number for record in self._records.values()}

    def total(self) -> int:
        """Number of distinct skipped rows (0 when the run skipped nothing)."""
        return len(self.skipped_rows)

    def counts(self) -> dict[str, int]:
        """Number of records per reason, most frequent first."""
        return dict(Counter(record.reason for record in self._records.values()).most_common())

    def __len__(self) -> int:
        return len(self._records)

    def __bool__(self) -> bool:
        return bool(self._records) or bool(self.ignored_columns)

    def render(self, max_rows_listed: int = 10) -> str:
        """A plain-text table for logs and the end-of-run report: reasons, counts, example rows, ignored columns."""
        lines = [f"skipped rows: {self.total()}"]
        if self._records:
            rows_by_reason: dict[str, list[int]] = {}
            for record in self.records:
                rows_by_reason.setdefault(record.reason, []).append(record.row_number)
            width = max(len("reason"), *(len(reason) for reason in rows_by_reason))
            lines.append(f"  {'reason':<{width}}  {'count':>5}  rows")
            for reason, count in self.counts().items():
                rows = sorted(set(rows_by_reason[reason]))
                shown = ", ".join(str(row) for row in rows[:max_rows_listed])
                more = f", ... (+{len(rows) - max_rows_listed})" if len(rows) > max_rows_listed else ""
                lines.append(f"  {reason:<{width}}  {count:>5}  {shown}{more}")
        for column, closest in sorted(self.ignored_columns.items()):
            hint = f" (did you mean {closest!r}?)" if closest else ""
            lines.append(f"ignored column {column!r}{hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for run reports: row numbers, columns, reasons and exception classes, never cell values."""
        return {
            "skipped_rows": self.total(),
            "counts": self.counts(),
            "skips": [record._asdict() for record in self.records],
            "ignored_columns": [
                {"column": column, "closest": closest} for column, closest in sorted(self.ignored_columns.items())
            ],
        }


def check_skip_fraction(summary: SkipSummary, total_rows: int, max_fraction: float) -> None:
    """Stop the run when more than ``max_fraction`` of the manifest's rows are unusable.

    A few bad rows are normal in institutional data; most rows failing means the manifest, its root folder or the
    chosen modalities are wrong, and training on the remainder would waste the run.

    Raises:
        TooManySkippedError: with the per-reason table, so the user sees what to fix.
    """
    if total_rows <= 0:
        raise TooManySkippedError("the manifest has no rows: nothing to train or evaluate on")
    skipped = summary.total()
    fraction = skipped / total_rows
    if fraction > max_fraction:
        raise TooManySkippedError(
            f"{skipped} of {total_rows} manifest rows ({fraction:.0%}) are unusable, more than max_skip_fraction="
            f"{max_fraction:g}; the manifest or its root folder is probably wrong.\n{summary.render()}"
        )
