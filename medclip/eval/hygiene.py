"""Evaluation hygiene: what every metric file records, and refusing to score patients the model trained on.

A number that cannot be traced to its weights, data, prompts and seed cannot be reproduced, so every recipe writes
``provenance_record`` into its metrics. A model scored on patients it saw in pretraining looks better than it is
(their studies were pulled together with their own reports), so ``check_unseen_patients`` compares the evaluated
patients with the pretraining patients a checkpoint lists in ``data_provenance.json`` and refuses an overlap unless
the user says ``allow_seen_patients: true`` (and the metric file then says so).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..checkpoint import MODEL_FILE, read_data_provenance
from ..data import file_sha256
from ..errors import MedclipError

PRETRAINING_SPLIT = "train"  # the patients whose studies the weights were fitted on


class SeenPatientsError(MedclipError, RuntimeError):
    """Evaluation would score patients seen in pretraining, or cannot tell; the message carries a reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"[{reason}] {message}")
        self.reason = reason


def checkpoint_sha256(checkpoint: str | os.PathLike) -> str:
    """sha256 (hex) of the checkpoint's weights file: the identity of the model that produced a number."""
    return file_sha256(Path(checkpoint) / MODEL_FILE)


def provenance_record(
    recipe: str,
    checkpoint: str | os.PathLike,
    manifest_sha256: str,
    pseudonym_key_fingerprint: str,
    seed: int | None,
    prompt_set: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What every metric file records so its numbers can be traced and reproduced.

    Args:
        recipe: the command that produced the file.
        checkpoint: checkpoint directory (only its weights' hash is recorded, not its path).
        manifest_sha256: hash of the evaluated manifest's bytes.
        pseudonym_key_fingerprint: which pseudonym key the manifest was read with.
        seed: the run's seed (bootstrap, probe subsampling); None for deterministic recipes without one.
        prompt_set: name, file hash and contents summary of the prompt set, for recipes that use prompts.
        **extra: recipe-specific settings (split, modalities, ...).
    """
    return {
        "recipe": recipe,
        "medclip_version": __version__,
        "checkpoint_sha256": checkpoint_sha256(checkpoint),
        "manifest_sha256": manifest_sha256,
        "pseudonym_key_fingerprint": pseudonym_key_fingerprint,
        "prompt_set": dict(prompt_set) if prompt_set is not None else None,
        "seed": None if seed is None else int(seed),
        **extra,
    }


def evaluation_provenance(
    recipe: str,
    checkpoint: str | os.PathLike,
    manifest: Any,
    seed: int,
    n_bootstrap: int,
    confidence: float,
    prompt_set: Mapping[str, Any] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """The provenance record of a patient-bootstrapped evaluation: ``provenance_record`` plus the bootstrap's
    settings (unit, replicates, confidence). ``manifest`` is the evaluated ``Manifest``."""
    return provenance_record(
        recipe,
        checkpoint,
        manifest.manifest_hash(),
        manifest.key_fingerprint,
        seed,
        prompt_set,
        **settings,
        bootstrap={"unit": "patient", "replicates": n_bootstrap, "confidence": confidence},
    )


def check_unseen_patients(
    checkpoint: str | os.PathLike,
    patients: Iterable[str],
    pseudonym_key_fingerprint: str,
    allow_seen_patients: bool = False,
) -> dict[str, Any]:
    """Refuse to evaluate on patients the checkpoint was pretrained on, unless explicitly allowed.

    Args:
        checkpoint: checkpoint directory with ``data_provenance.json``.
        patients: pseudonyms of every patient whose rows are scored (test rows, and validation rows that pick
            thresholds).
        pseudonym_key_fingerprint: the evaluated manifest's key fingerprint; pseudonyms under different keys cannot
            be compared.
        allow_seen_patients: evaluate anyway; the returned record says how many were seen.

    Returns:
        A record for the metric file: ``{"checked", "seen_patients", "evaluated_patients", "allow_seen_patients",
        "note"}``.

    Raises:
        SeenPatientsError: ``seen_patients`` (overlap), ``no_provenance`` (checkpoint without a patient list) or
            ``key_mismatch`` (manifest pseudonymised with another key), unless ``allow_seen_patients``.
    """
    evaluated = set(patients)
    record: dict[str, Any] = {
        "checked": False,
        "seen_patients": None,
        "evaluated_patients": len(evaluated),
        "allow_seen_patients": bool(allow_seen_patients),
        "note": "",
    }
    provenance = read_data_provenance(checkpoint)
    if provenance is None:
        reason, note = "no_provenance", "the checkpoint records no pretraining patients, so overlap cannot be checked"
    elif provenance.get("pseudonym_key_fingerprint") != pseudonym_key_fingerprint:
        reason, note = (
            "key_mismatch",
            "the manifest was pseudonymised with another key than the pretraining data, so patients cannot be matched",
        )
    else:
        seen = evaluated & set(provenance.get("patients", {}).get(PRETRAINING_SPLIT, []))
        record.update(checked=True, seen_patients=len(seen))
        if not seen:
            return record
        reason = "seen_patients"
        note = f"{len(seen)} of {len(evaluated)} evaluated patients were in the checkpoint's pretraining split"
    record["note"] = note
    if allow_seen_patients:
        return record
    raise SeenPatientsError(
        reason,
        f"{note}; evaluate on held-out patients (e.g. split: test of the pretraining manifest) or set "
        "allow_seen_patients: true to evaluate anyway (the metric file will say so)",
    )
