"""Deterministic patient-level splits: every study of a patient lands in the same split.

Splitting by row would put one patient's CT in training and their follow-up CT in the test set, and the model would
be scored on recognising the patient rather than the finding. Each patient pseudonym is hashed with a seed to a
number in [0, 1) that picks the split, so the split is reproducible without storing it, stable when rows are added,
and (because pseudonyms are keyed) specific to the institution's pseudonym key.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .manifest import SPLITS, Manifest, ManifestError

MAX_VAL_FRACTION = 0.3  # min_val_patients never takes more than this share of the patients for validation


@dataclass
class SplitConfig:
    """How patients without an explicit ``split`` cell are divided (fractions of patients, and the hash seed).

    Pretraining records it in the model card, so evaluation recipes find exactly the patients it held out.
    """

    val_fraction: float = 0.1  # of patients, for rows without a `split` column value
    test_fraction: float = 0.1
    split_seed: int = 0  # seed of the deterministic patient-hash split

    def assign(self, manifest: Manifest) -> dict[int, str]:
        """Row number -> split for every accepted row of ``manifest`` (``assign_splits`` with these settings)."""
        return assign_splits(manifest, self.val_fraction, self.test_fraction, self.split_seed)

    def with_validation_patients(self, manifest: Manifest, minimum: int) -> tuple[SplitConfig, str | None]:
        """These settings, with ``val_fraction`` raised (up to ``MAX_VAL_FRACTION``) until the validation split has
        at least ``minimum`` patients: a validation metric over a handful of patients means nothing.

        Returns:
            ``(settings, note)``; the note explains a change, or warns that the manifest cannot give ``minimum``
            validation patients (None when nothing needed saying). Explicit ``split`` cells are never changed.
        """
        patients = {row.patient for row in manifest.rows}
        chosen = self
        for fraction in (self.val_fraction, *np.linspace(self.val_fraction, MAX_VAL_FRACTION, 12)[1:]):
            if fraction + self.test_fraction >= 1.0:
                break
            chosen = SplitConfig(float(fraction), self.test_fraction, self.split_seed)
            if _validation_patients(manifest, chosen.assign(manifest)) >= minimum:
                break
        found = _validation_patients(manifest, chosen.assign(manifest))
        note = None
        if found < minimum:
            note = (
                f"the validation split has {found} patients (of {len(patients)}), fewer than "
                f"min_val_patients={minimum}: validation metrics will be noisy; add patients or split cells"
            )
        elif chosen.val_fraction != self.val_fraction:
            note = (
                f"val_fraction raised from {self.val_fraction:g} to {chosen.val_fraction:.3g} so that validation has "
                f"{found} patients (min_val_patients={minimum}); the model card records the fractions used"
            )
        return chosen, note


def patient_uniform(patient: str, seed: int) -> float:
    """A number in [0, 1) that depends only on the patient pseudonym and the seed."""
    digest = hashlib.sha256(f"{seed}\0{patient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(patient: str, val_fraction: float, test_fraction: float, seed: int) -> str:
    """The split of a patient without an explicit one: test below ``test_fraction``, then val, then train."""
    position = patient_uniform(patient, seed)
    if position < test_fraction:
        return "test"
    if position < test_fraction + val_fraction:
        return "val"
    return "train"


def assign_splits(
    manifest: Manifest, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> dict[int, str]:
    """Map each accepted row number to train / val / test, patient by patient.

    An explicit ``split`` cell wins and applies to all of that patient's rows (blank cells included); patients
    without one are hash-split by ``val_fraction`` / ``test_fraction`` of patients.

    Raises:
        ManifestError: bad fractions, or a patient whose rows name different explicit splits (naming the pseudonym
            and the rows), because that would leak a patient across splits.
    """
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ManifestError(f"{name} must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise ManifestError(
            f"val_fraction + test_fraction must leave rows for training, got {val_fraction + test_fraction}"
        )

    explicit: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))  # patient -> split -> rows
    for row in manifest.rows:
        if row.split is not None:
            explicit[row.patient][row.split].append(row.row_number)
    patient_split: dict[str, str] = {}
    for patient, rows_by_split in explicit.items():
        if len(rows_by_split) > 1:
            where = "; ".join(
                f"{split}: rows {', '.join(map(str, rows))}" for split, rows in sorted(rows_by_split.items())
            )
            raise ManifestError(
                f"patient {patient} has rows in different splits ({where}); a patient must be in one split only"
            )
        patient_split[patient] = next(iter(rows_by_split))

    assignment = {}
    for row in manifest.rows:
        if row.patient not in patient_split:
            patient_split[row.patient] = hash_split(row.patient, val_fraction, test_fraction, seed)
        assignment[row.row_number] = patient_split[row.patient]
    check_no_patient_leakage(manifest, assignment)
    return assignment


def check_no_patient_leakage(manifest: Manifest, assignment: dict[int, str]) -> None:
    """Raise ManifestError if any patient's rows are assigned to more than one split (e.g. a hand-made assignment)."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for row in manifest.rows:
        split = assignment.get(row.row_number)
        if split is None:
            continue
        if split not in SPLITS:
            raise ManifestError(f"row {row.row_number} is assigned to unknown split {split!r}; use {', '.join(SPLITS)}")
        splits_of[row.patient].add(split)
    leaking = sorted(patient for patient, splits in splits_of.items() if len(splits) > 1)
    if leaking:
        shown = ", ".join(f"{patient} ({'/'.join(sorted(splits_of[patient]))})" for patient in leaking[:5])
        raise ManifestError(f"{len(leaking)} patients are in more than one split: {shown}")


def _validation_patients(manifest: Manifest, assignment: dict[int, str]) -> int:
    return len({row.patient for row in manifest.rows if assignment.get(row.row_number) == "val"})
