"""``ManifestDataset``: the paired samples of one split, with bad rows skipped and counted instead of crashing a run.

Rows are checked in two phases:

1. At construction, a cheap validation pass over this split's rows (no file is read): a row with no modality cell is
   "no_modality", a cell its modality cannot resolve gets the modality's reason, and a path reference that does not
   exist is "missing_file". These rows are excluded and recorded in ``summary`` (which starts from the manifest's
   ingest rejections: missing patient, bad label, bad split).
2. At load time, ``__getitem__`` catches any failure and returns a skip marker ``{"skipped": SkipRecord}`` instead
   of raising, so a corrupt file cannot kill a DataLoader worker. ``collate_samples`` drops the markers and reports
   them in ``batch["skipped"]``; the trainer adds them to its summary (``SkipSummary.add_markers``).

A failing row is skipped as a whole, never trained on with the failed modality quietly missing: that would silently
change what the row means. Messages name the row number, column and reason, never the cell (a path or a report can
hold a patient's name).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..types import Modality, ModalityError, Sample
from .collate import collate_samples
from .manifest import SPLITS, Manifest, ManifestRow
from .summary import SkipRecord, SkipSummary

logger = logging.getLogger("medclip.data")

UNREADABLE = "unreadable"  # reason for a load failure that is not a ModalityError (a corrupt file, a library error)
TRANSFORM_FAILED = "transform_failed"  # reason for a transform failure that is not a ModalityError
UNRESOLVABLE = "unresolvable"  # reason for a cell that ``Modality.resolve`` cannot turn into a reference


def _reference_exists(reference: Any) -> bool:
    """False when a reference names a file or folder that is not there: a path, or a mapping with a "path" entry.

    Checked up front for every split, so a missing file is reported before training instead of whenever (if ever)
    its row is first drawn. Inline values (report text) have no path and always pass.
    """
    if isinstance(reference, Mapping):
        reference = reference.get("path")
        if isinstance(reference, str):
            reference = Path(reference)
    if isinstance(reference, os.PathLike):
        return os.path.exists(reference)
    return True


def _reference_path(reference: Any) -> Path | None:
    """The file or folder a reference names (a path, or a mapping with a "path"), or None for inline values.

    A bare string is an inline value (report text): plugins resolve file cells to ``Path`` objects or to mappings
    with a "path" entry (``Modality.resolve``), the convention ``_reference_exists`` follows too.
    """
    if isinstance(reference, Mapping):
        reference = reference.get("path")
        if isinstance(reference, str):
            reference = Path(reference)
    if isinstance(reference, os.PathLike):
        return Path(reference)
    return None


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (links resolved) lies inside ``root`` (links resolved)."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
    except ValueError:
        return False
    return True


def _reason(error: Exception, default: str) -> str:
    return error.reason if isinstance(error, ModalityError) else default


class ManifestDataset(Dataset):
    """The rows of one split as samples ``{name: data, f"{name}_meta": ..., "labels", "targets", "patient_id", ...}``.

    Args:
        manifest: the pseudonymised manifest.
        modalities: name -> plugin instance, for the modalities this dataset loads (a subset of the manifest's).
        split: "train", "val", "test", or None for every row.
        train: whether the samples are for training; selects augmenting transforms when ``transforms`` is None.
        transforms: modality name -> callable on the sample, applied when that modality is present. None builds each
            modality's own ``transforms(train)`` on first use (after ``Modality.fit`` has run on
            ``load_raw``); ``{}`` returns samples as loaded.
        splits: row number -> split (``SplitConfig.assign`` or ``assign_splits`` with the run's fractions and seed);
            required when ``split`` is given, since only the run knows how it divided its patients.
        confine_paths: refuse (``outside_root``) cells whose path, links resolved, leaves the manifest's root
            folder: a shared manifest must not make a run read ``/etc`` or another project's data.
    """

    def __init__(
        self,
        manifest: Manifest,
        modalities: Mapping[str, Modality],
        split: str | None = None,
        train: bool = False,
        transforms: Mapping[str, Callable[[Sample], Sample]] | None = None,
        *,
        splits: Mapping[int, str] | None = None,
        confine_paths: bool = False,
    ) -> None:
        unknown = sorted(set(modalities) - set(manifest.modalities))
        if unknown:
            raise ValueError(f"modalities {unknown} are not columns this manifest was read for {manifest.modalities}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, got {split!r}")
        if split is not None and splits is None:
            raise ValueError(
                f"split={split!r} needs the run's row -> split assignment (splits=SplitConfig().assign(...))"
            )
        self.manifest = manifest
        self.modalities = dict(modalities)
        self.split = split
        self.train = train
        self.confine_paths = confine_paths
        self._transforms: dict[str, Callable[[Sample], Sample]] | None = None
        if transforms is not None:
            self.set_transforms(transforms)
        self.summary = SkipSummary().merge(manifest.summary)
        self._items: list[tuple[ManifestRow, dict[str, Any]]] = []  # (row, modality name -> load reference)
        for row in manifest.rows:
            if split is not None and splits.get(row.row_number) != split:
                continue
            references = self._validate(row)
            if references is not None:
                self._items.append((row, references))
        logger.info(
            "dataset %s: %d rows usable, %d skipped rows in the manifest so far",
            split or "all",
            len(self._items),
            self.summary.total(),
        )

    def _validate(self, row: ManifestRow) -> dict[str, Any] | None:
        """Phase 1: resolve each present cell and check path existence; record every problem of the row."""
        present = {name: row.cells.get(name) for name in self.modalities if row.cells.get(name) is not None}
        if not present:
            self.summary.add(row.row_number, "", "no_modality")
            return None
        references: dict[str, Any] = {}
        usable = True
        for name, cell in present.items():
            try:
                reference = self.modalities[name].resolve(cell, self.manifest.root)
            except Exception as error:
                self.summary.add(row.row_number, name, _reason(error, UNRESOLVABLE), type(error).__name__)
                usable = False
                continue
            path = _reference_path(reference)
            if self.confine_paths and path is not None and not _inside(path, self.manifest.root):
                self.summary.add(row.row_number, name, "outside_root")
                usable = False
            elif not _reference_exists(reference):
                self.summary.add(row.row_number, name, "missing_file", FileNotFoundError.__name__)
                usable = False
            references[name] = reference
        return references if usable else None

    def __len__(self) -> int:
        return len(self._items)

    def rows(self) -> list[ManifestRow]:
        """The usable manifest rows (pseudonymised), in dataset order."""
        return [row for row, _ in self._items]

    def file_references(self) -> Iterator[tuple[ManifestRow, str]]:
        """(row, identity) for every cell of the usable rows that names a file or folder.

        The identity is the file's real path, followed by the part of the file the cell names (``#row=3``) for
        plugins whose files hold many patients (``Modality.files_hold_many_patients``).
        """
        for row, references in self._items:
            for name, reference in references.items():
                path = _reference_path(reference)
                if path is None:
                    continue
                identity = os.path.realpath(path)
                if self.modalities[name].files_hold_many_patients and isinstance(reference, Mapping):
                    part = sorted((str(key), str(value)) for key, value in reference.items() if key != "path")
                    identity += "#" + "&".join(f"{key}={value}" for key, value in part)
                yield row, identity

    def row_references(self) -> dict[int, dict[str, Any]]:
        """1-based row number -> {modality: load reference} of the usable rows (for local-only outputs only)."""
        return {row.row_number: dict(references) for row, references in self._items}

    def row_numbers(self) -> list[int]:
        """Manifest row numbers of the usable rows, in dataset order."""
        return [row.row_number for row, _ in self._items]

    @property
    def collate_fn(self) -> Callable[[list[Sample]], dict[str, Any]]:
        """``collate_samples`` bound to this dataset's modalities, for ``DataLoader(collate_fn=...)``."""
        return functools.partial(collate_samples, modalities=self.modalities)

    def set_transforms(self, transforms: Mapping[str, Callable[[Sample], Sample]]) -> None:
        """Replace the transforms, e.g. with ones built after ``Modality.fit`` (``{}`` = samples as loaded)."""
        if set(transforms) - set(self.modalities):
            raise ValueError(
                f"transforms given for {sorted(set(transforms) - set(self.modalities))}, which are not loaded"
            )
        self._transforms = dict(transforms)

    def with_transforms(self, transforms: Mapping[str, Callable[[Sample], Sample]]) -> ManifestDataset:
        """The same rows (no second validation pass over the manifest) with other transforms."""
        other = copy.copy(self)
        other._transforms = None
        other.set_transforms(transforms)
        return other

    def _active_transforms(self) -> dict[str, Callable[[Sample], Sample]]:
        # Built lazily so that modalities that fit on data (tokenizers, gene vocabularies) are fitted first.
        if self._transforms is None:
            self._transforms = {name: modality.transforms(self.train) for name, modality in self.modalities.items()}
        return self._transforms

    def __getitem__(self, index: int) -> Sample:
        """Phase 2: load and transform one row, or return ``{"skipped": SkipRecord}`` if anything fails."""
        row, references = self._items[index]
        sample: Sample = {}
        for name, reference in references.items():
            try:
                sample.update(self.modalities[name].load(reference))
            except Exception as error:  # any failure skips the row; the worker must survive a corrupt file
                return {"skipped": SkipRecord(row.row_number, name, _reason(error, UNREADABLE), type(error).__name__)}
        transforms = self._active_transforms()
        for name in references:
            if name not in transforms:
                continue
            try:
                sample = transforms[name](sample)
            except Exception as error:
                reason = _reason(error, TRANSFORM_FAILED)
                return {"skipped": SkipRecord(row.row_number, name, reason, type(error).__name__)}
        sample["labels"] = torch.from_numpy(row.labels.copy())  # (K,) float32, NaN = unknown
        sample["targets"] = torch.from_numpy(row.targets.copy())  # (T,) float32, NaN = unknown
        sample["patient_id"] = row.patient
        sample["study_id"] = row.study
        sample["row"] = row.row_number
        return sample

    def load_raw(self, modality_name: str) -> Iterator[Sample]:
        """Loaded (untransformed) samples of one modality over this dataset's rows, for ``Modality.fit``.

        Only ``modality_name`` is read, so fitting a tokenizer does not load every CT. Failures are recorded in
        ``summary`` and skipped.
        """
        if modality_name not in self.modalities:
            raise ValueError(f"modality {modality_name!r} is not loaded by this dataset ({sorted(self.modalities)})")
        modality = self.modalities[modality_name]
        for row, references in self._items:
            if modality_name not in references:
                continue
            try:
                yield modality.load(references[modality_name])
            except Exception as error:
                self.summary.add(row.row_number, modality_name, _reason(error, UNREADABLE), type(error).__name__)
