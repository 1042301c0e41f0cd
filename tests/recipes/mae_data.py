"""What the ``medclip mae`` tests share: chest phantoms written as NIfTI files and DICOM series by the real writers
(nibabel, pydicom), a manifest with only ``patient_id``, ``split`` and ``ct`` (no reports), and a small, fast config.

A plain module (not a test file): the test modules import it, and so do their spawned worker processes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from medclip import config
from modalities.ct.phantom import write_nifti
from modalities.volume.dicom_write import write_dicom_series
from modalities.volume.phantom import chest_phantom
from recipes import mae

CT_OPTIONS = {
    "size": [32, 32, 32],  # 32^3 voxels of 10 mm: the phantom chest, in 64 patches of 8^3
    "spacing": [10.0, 10.0, 10.0],
    "patch_size": [8, 8, 8],
    "hu_windows": ["lung", "mediastinum"],
    "augment": False,
}
FAKE_IDENTIFIERS = ("Phantom^Mae", "MAE000")  # written into the DICOM headers; must never reach an output


def write_volume_manifest(folder: Path, nifti: int = 8, dicom: int = 4, val: int = 2) -> Path:
    """Chest phantoms as NIfTI files and DICOM series, and a manifest with only patient_id, split and ct."""
    rows = []
    for index in range(nifti + dicom):
        case = chest_phantom(index, shape=(32, 32, 32), spacing=(10.0, 10.0, 10.0))
        if index < nifti:
            cell = f"volumes/case_{index}.nii.gz"
            (folder / "volumes").mkdir(parents=True, exist_ok=True)
            write_nifti(folder / cell, case.hounsfield, case.affine)
        else:
            cell = f"dicom/case_{index}"
            identifiers = {"PatientName": f"{FAKE_IDENTIFIERS[0]}{index}", "PatientID": f"{FAKE_IDENTIFIERS[1]}{index}"}
            write_dicom_series(folder / cell, case.hounsfield, case.affine, identifiers=identifiers, shuffle_seed=index)
        split = "val" if index >= nifti + dicom - val else "train"
        rows.append({"patient_id": f"patient-{index}", "split": split, "ct": cell})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["patient_id", "split", "ct"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def mae_config(manifest: Path, out: Path, *overrides: str) -> mae.Config:
    data = {
        "modalities": {"ct": {**CT_OPTIONS, "cache_dir": str(manifest.parent / "cache")}},
        "data": {"manifest": str(manifest)},
    }
    base = [
        f"out={out}",
        "train.batch_size=4",
        "train.lr=1e-3",
        "train.weight_decay=0.05",
        "train.warmup_steps=5",
        "train.log_every=1",
        "train.progress=false",
        "train.precision=fp32",
    ]
    return config.build(mae.Config, config.apply_overrides(data, [*base, *overrides]))
