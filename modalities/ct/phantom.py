"""Write a synthetic CT-report data set: chest phantoms + matching reports + labels + manifest.csv.

    python -m modalities.ct.phantom --out data/ct_phantom --n 64
    medclip pretrain --config recipes/configs/ct_report_pretrain.yaml data.manifest=data/ct_phantom/manifest.csv

Volumes are written as NIfTI (``--format nifti``, default), as DICOM series with identifiers planted in the headers
(``--format dicom``, to try the DICOM path; the identifiers are fake and must never reach an output), or both (the
manifest then points at the DICOM folders). Reports describe exactly the findings drawn (``modalities.volume.phantom``);
``label:<finding>`` columns hold 1/0 for each, named as in medclip/prompts/chest_ct_findings.yaml.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from modalities.volume.dicom_write import write_dicom_series
from modalities.volume.phantom import FINDINGS, PhantomCase, chest_phantom

FORMATS = ("nifti", "dicom", "both")
# finding -> its label column name, matching the bundled prompt set medclip/prompts/chest_ct_findings.yaml so that
# `medclip zero-shot` can score the phantoms with it
LABEL_NAMES = {"nodule": "pulmonary nodule", "effusion": "pleural effusion", "cardiomegaly": "cardiomegaly"}
NORMAL = {
    "nodule": ("The lungs are clear without pulmonary nodules.", "No suspicious pulmonary nodule."),
    "effusion": ("No pleural effusion.", "The pleural spaces are clear."),
    "cardiomegaly": ("Heart size is normal.", "The cardiac silhouette is within normal limits."),
}


def _abnormal(finding: str, details: dict[str, object], rng: random.Random) -> tuple[str, str]:
    """(findings sentence, impression sentence) for a present finding."""
    if finding == "nodule":
        size, side = details["size_mm"], details["side"]
        return (
            f"A {size} mm solid nodule is present in the {side} lung.",
            f"{size} mm {side} pulmonary nodule; follow-up CT is recommended.",
        )
    if finding == "effusion":
        size, side = details["size"], details["side"]
        return (
            f"There is a {size} {side} pleural effusion layering dependently.",
            f"{str(size).capitalize()} {side} pleural effusion.",
        )
    ratio = details["ratio"]
    return (
        f"The heart is enlarged, cardiothoracic ratio approximately {ratio}.",
        rng.choice(("Cardiomegaly.", "Enlarged heart.")),
    )


def phantom_report(case: PhantomCase, seed: int) -> str:
    """A templated radiology report (FINDINGS / IMPRESSION) naming exactly the case's findings."""
    rng = random.Random(seed)
    findings, impressions = [], []
    for finding in FINDINGS:
        if case.findings.get(finding):
            sentence, impression = _abnormal(finding, case.details[finding], rng)
            findings.append(sentence)
            impressions.append(impression)
        else:
            findings.append(rng.choice(NORMAL[finding]))
    findings.append("The osseous structures are unremarkable.")
    if not impressions:
        impressions = ["No acute cardiopulmonary abnormality."]
    return "\n".join(
        ["EXAMINATION: CT CHEST", "", "FINDINGS:", " ".join(findings), "", "IMPRESSION:", " ".join(impressions)]
    )


def write_nifti(path: Path, hounsfield: np.ndarray, affine: np.ndarray) -> None:
    """int16 HU with the affine as both sform and qform (code 1, scanner coordinates)."""
    image = nib.Nifti1Image(hounsfield, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, path)


def write_phantom_dataset(
    out: str | Path,
    n: int = 64,
    seed: int = 0,
    shape: Sequence[int] = (64, 64, 48),
    spacing: Sequence[float] = (6.0, 6.0, 7.0),
    volume_format: str = "nifti",
) -> Path:
    """Write ``n`` phantom studies under ``out``; returns the manifest path.

    Layout: ``volumes/case_NNNN.nii.gz`` and/or ``dicom/case_NNNN/IM*.dcm``, ``reports/case_NNNN.txt``,
    ``manifest.csv`` with columns patient_id, study_id, ct, report, label:pulmonary nodule, label:pleural effusion,
    label:cardiomegaly.
    """
    if volume_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {volume_format!r}")
    if n < 1:
        raise ValueError("n must be at least 1")
    out = Path(out)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n):
        case_seed = seed * 1_000_003 + index
        case = chest_phantom(case_seed, shape=tuple(shape), spacing=tuple(spacing))
        name = f"case_{index:04d}"
        if volume_format in ("nifti", "both"):
            (out / "volumes").mkdir(exist_ok=True)
            write_nifti(out / "volumes" / f"{name}.nii.gz", case.hounsfield, case.affine)
            volume_cell = f"volumes/{name}.nii.gz"
        if volume_format in ("dicom", "both"):
            identifiers = {  # fake identifiers, as a real export would carry: they must never reach an output
                "PatientName": f"Phantom^Case{index:04d}",
                "PatientID": f"PH{index:06d}",
                "PatientBirthDate": "19700101",
                "StudyDate": "20240101",
                "AccessionNumber": f"ACC{index:06d}",
            }
            write_dicom_series(
                out / "dicom" / name, case.hounsfield, case.affine, identifiers=identifiers, shuffle_seed=case_seed
            )
            volume_cell = f"dicom/{name}"
        (out / "reports" / f"{name}.txt").write_text(phantom_report(case, case_seed))
        row = {"patient_id": f"phantom-{index:04d}", "study_id": name, "ct": volume_cell}
        row["report"] = f"reports/{name}.txt"
        row.update({f"label:{LABEL_NAMES[finding]}": int(case.findings[finding]) for finding in FINDINGS})
        rows.append(row)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic chest CT + report data set with a manifest.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=64, help="number of studies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default="nifti", choices=FORMATS, help="volume files to write")
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 64, 48), help="voxels (R-L, A-P, S-I)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(6.0, 6.0, 7.0), help="mm per voxel")
    args = parser.parse_args(argv)
    manifest = write_phantom_dataset(args.out, args.n, args.seed, args.shape, args.spacing, args.format)
    print(f"wrote {args.n} phantom studies; manifest: {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
