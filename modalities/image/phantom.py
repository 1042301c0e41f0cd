"""Synthetic 2-D images: chest radiograph phantoms with findings, and a CXR <-> report data set writer.

    python -m modalities.image.phantom --out data/cxr_phantom --n 64
    medclip pretrain --config recipes/configs/cxr_report_pretrain.yaml data.manifest=data/cxr_phantom/manifest.csv

A phantom is a PA chest radiograph as displayed (bone and soft tissue bright, aerated lung dark): body, lungs, heart,
mediastinum, spine, ribs and clavicles, with any of four CheXpert findings drawn in: cardiomegaly (a wider heart),
pleural effusion (a fluid meniscus at a lung base), pneumothorax (a lucent rim without lung markings at an apex) and
consolidation (a dense patch in a lung). Reports describe exactly the findings drawn, with the words of
``medclip/prompts/chexpert_14.yaml``, so zero-shot evaluation with that prompt set works on them.

The writer stores the images as real files: DICOM CR (MONOCHROME1, windowed, ImagerPixelSpacing), DICOM DX
(MONOCHROME2, VOI LUT Sequence, PixelSpacing) and 8-bit PNG, in turn, with fake identifiers in the DICOM headers
(which must never reach an output).
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from .config import ImageConfig
from .dicom_write import image_dataset, write_dicom_image
from .record import ImageRecord

FINDINGS = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Consolidation")
PREVALENCE = {"Cardiomegaly": 0.4, "Pleural Effusion": 0.35, "Pneumothorax": 0.25, "Consolidation": 0.35}
SIDES = ("right", "left")


@dataclass
class RadiographCase:
    """A phantom and what was drawn into it."""

    display: np.ndarray  # (H, W) float32 in [0, 1], as a viewer shows it
    findings: dict[str, bool]
    details: dict[str, str] = field(default_factory=dict)


def _ellipse(rows: np.ndarray, columns: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]):
    return ((rows - centre[0]) / radii[0]) ** 2 + ((columns - centre[1]) / radii[1]) ** 2 <= 1.0


def chest_radiograph(
    seed: int, shape: tuple[int, int] = (256, 256), findings: dict[str, bool] | None = None
) -> RadiographCase:
    """A PA chest radiograph phantom; ``findings`` fixes which are drawn (random by prevalence otherwise).

    The patient's right is on the image's left (the radiographic convention), the heart bulges to the image's right.
    """
    rng = np.random.default_rng(seed)
    if findings is None:
        findings = {name: bool(rng.random() < PREVALENCE[name]) for name in FINDINGS}
    height, width = shape
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    rows, columns = rows / height, columns / width  # [0, 1) coordinates
    image = np.full(shape, 0.04, dtype=np.float32)  # air around the patient
    image[_ellipse(rows, columns, (0.55, 0.5), (0.52, 0.46))] = 0.55  # soft tissue of the chest
    shift = rng.normal(0.0, 0.015, 2)
    lungs = {}
    for side, centre_column in (("right", 0.3), ("left", 0.7)):
        lung = _ellipse(rows, columns, (0.48 + shift[0], centre_column + shift[1]), (0.3, 0.15))
        lung &= rows > 0.18
        lungs[side] = lung
        image[lung] = 0.16
    # rib shadows across the lungs: bright arcs
    for index in range(8):
        arc = np.abs(rows - (0.22 + 0.075 * index) - 0.05 * np.cos((columns - 0.5) * np.pi * 2.2)) < 0.009
        image[arc & (lungs["right"] | lungs["left"])] += 0.12
    details: dict[str, str] = {}
    heart_width = 0.17 + (0.06 + 0.03 * rng.random() if findings.get("Cardiomegaly") else 0.02 * rng.random())
    heart = _ellipse(rows, columns, (0.62, 0.55), (0.16, heart_width))
    image[heart] = 0.62
    image[(np.abs(columns - 0.5) < 0.045) & (rows > 0.1)] = 0.7  # mediastinum and spine
    for sign in (-1.0, 1.0):  # clavicles (right, left)
        clavicle = np.abs(rows - 0.17 + 0.1 * sign * (columns - 0.5)) < 0.012
        image[clavicle & (np.abs(columns - 0.5) < 0.33)] = 0.8
    if findings.get("Pleural Effusion"):
        side = SIDES[int(rng.integers(2))]
        level = 0.62 + 0.08 * rng.random()
        meniscus = rows > level - 0.05 * np.abs(columns - (0.3 if side == "right" else 0.7)) * 4
        image[lungs[side] & meniscus] = 0.58
        details["Pleural Effusion"] = side
    if findings.get("Pneumothorax"):
        side = SIDES[int(rng.integers(2))]
        centre = 0.3 if side == "right" else 0.7
        rim = lungs[side] & (rows < 0.45) & (np.abs(columns - centre) > 0.08)
        image[rim] = 0.05  # no lung markings, darker than lung
        image[lungs[side] & (rows < 0.45) & (np.abs(np.abs(columns - centre) - 0.08) < 0.006)] = 0.4  # pleural line
        details["Pneumothorax"] = side
    if findings.get("Consolidation"):
        side = SIDES[int(rng.integers(2))]
        centre = (0.45 + 0.15 * rng.random(), (0.3 if side == "right" else 0.7) + rng.normal(0, 0.02))
        patch = _ellipse(rows, columns, centre, (0.06 + 0.03 * rng.random(), 0.05 + 0.02 * rng.random()))
        image[patch & lungs[side]] = 0.48
        details["Consolidation"] = side
    image += rng.normal(0.0, 0.015, shape).astype(np.float32)
    image = _blur(image)
    return RadiographCase(display=np.clip(image, 0.0, 1.0), findings=dict(findings), details=details)


def _blur(image: np.ndarray) -> np.ndarray:
    """A 3x3 box blur: soft edges like a real projection."""
    padded = np.pad(image, 1, mode="edge")
    total = sum(padded[r : r + image.shape[0], c : c + image.shape[1]] for r in range(3) for c in range(3))
    return (total / 9.0).astype(np.float32)


NORMAL = {
    "Cardiomegaly": ("The heart size is normal.", "No cardiomegaly.", "Normal cardiac silhouette."),
    "Pleural Effusion": ("No pleural effusion.", "The costophrenic angles are sharp."),
    "Pneumothorax": ("No pneumothorax.", "The lungs are fully expanded."),
    "Consolidation": ("No focal consolidation.", "The lungs are clear."),
}


def _abnormal(finding: str, side: str, rng: random.Random) -> tuple[str, str]:
    if finding == "Cardiomegaly":
        return rng.choice(
            (
                ("The cardiac silhouette is enlarged.", "Cardiomegaly."),
                ("The heart is enlarged.", "Enlarged cardiac silhouette, cardiomegaly."),
            )
        )
    if finding == "Pleural Effusion":
        return (
            f"There is a {side} pleural effusion blunting the costophrenic angle.",
            f"{side.capitalize()} pleural effusion.",
        )
    if finding == "Pneumothorax":
        return (
            f"A {side} apical pneumothorax is seen with a visible pleural line.",
            f"{side.capitalize()} pneumothorax.",
        )
    return (
        f"Focal consolidation in the {side} lung, an airspace opacity.",
        f"{side.capitalize()} lung consolidation, possibly pneumonia.",
    )


def radiograph_report(case: RadiographCase, seed: int) -> str:
    """A templated chest radiograph report (FINDINGS / IMPRESSION) naming exactly the case's findings."""
    rng = random.Random(seed)
    findings, impressions = [], []
    for finding in FINDINGS:
        if case.findings.get(finding):
            sentence, impression = _abnormal(finding, case.details.get(finding, "right"), rng)
            findings.append(sentence)
            impressions.append(impression)
        else:
            findings.append(rng.choice(NORMAL[finding]))
    findings.append("No acute osseous abnormality.")
    if not impressions:
        impressions = ["No acute cardiopulmonary abnormality. No finding."]
    return "\n".join(
        ["EXAMINATION: CHEST PA", "", "FINDINGS:", " ".join(findings), "", "IMPRESSION:", " ".join(impressions)]
    )


# --- the three file forms of the data set -------------------------------------------------------------------------
def cr_monochrome1(display: np.ndarray, identifiers: dict[str, str]) -> Dataset:
    """CR, MONOCHROME1 (high stored values are dark), 12 bits in 16, a window, ImagerPixelSpacing."""
    stored = np.rint((1.0 - display) * 4095.0).astype(np.uint16)
    tags = {"WindowCenter": "2048", "WindowWidth": "4096", "ViewPosition": "PA"}
    return image_dataset(
        stored, "CR", photometric="MONOCHROME1", bits_stored=12, spacing=(1.4, 1.4), identifiers=identifiers, tags=tags
    )


def dx_voi_lut(display: np.ndarray, identifiers: dict[str, str]) -> Dataset:
    """DX, MONOCHROME2, 14 bits in 16, a linear VOI LUT Sequence of 4096 entries over [1000, 5095], PixelSpacing."""
    stored = np.rint(1000.0 + display * 4095.0).astype(np.uint16)
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 1000, 12])  # LUT Descriptor: entries, first mapped value, bits
    item.add_new(0x00283006, "OW", np.arange(4096, dtype="<u2").tobytes())  # LUT Data
    tags = {"VOILUTSequence": [item], "ViewPosition": "PA", "PresentationLUTShape": "IDENTITY"}
    return image_dataset(
        stored, "DX", bits_stored=14, spacing=(1.4, 1.4), spacing_tag="PixelSpacing", identifiers=identifiers, tags=tags
    )


def write_png(path: Path, display: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.rint(display * 255.0).astype(np.uint8), mode="L").save(path)


def write_cxr_dataset(out: str | Path, n: int = 64, seed: int = 0, shape: Sequence[int] = (256, 256)) -> Path:
    """Write ``n`` phantom studies under ``out``; returns the manifest path.

    Layout: ``images/case_NNNN.{dcm,png}`` (CR DICOM, DX DICOM and PNG in turn), ``reports/case_NNNN.txt``,
    ``manifest.csv`` with columns patient_id, study_id, image, report, label:<finding> for the four findings and
    label:No Finding.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(exist_ok=True)
    rows = []
    for index in range(n):
        case_seed = seed * 1_000_003 + index
        case = chest_radiograph(case_seed, shape=(int(shape[0]), int(shape[1])))
        name = f"case_{index:04d}"
        identifiers = {  # fake identifiers, as a real export would carry: they must never reach an output
            "PatientName": f"Phantom^Radiograph{index:04d}",
            "PatientID": f"CXR{index:06d}",
            "PatientBirthDate": "19700101",
            "AccessionNumber": f"ACX{index:06d}",
        }
        form = index % 3
        if form == 0:
            cell = f"images/{name}.dcm"
            write_dicom_image(out / cell, cr_monochrome1(case.display, identifiers))
        elif form == 1:
            cell = f"images/{name}.dcm"
            write_dicom_image(out / cell, dx_voi_lut(case.display, identifiers))
        else:
            cell = f"images/{name}.png"
            write_png(out / cell, case.display)
        (out / "reports" / f"{name}.txt").write_text(radiograph_report(case, case_seed))
        row = {
            "patient_id": f"cxr-phantom-{index:04d}",
            "study_id": name,
            "image": cell,
            "report": f"reports/{name}.txt",
        }
        row.update({f"label:{finding}": int(case.findings[finding]) for finding in FINDINGS})
        row["label:No Finding"] = int(not any(case.findings.values()))
        rows.append(row)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


# --- synthetic samples for the plugin contract (``ImageModality.synthetic``) --------------------------------------
def synthetic_records(cfg: ImageConfig, n: int, seed: int = 0) -> list[ImageRecord]:
    """``n`` small images of the configured type, as a reader returns them (no files involved)."""
    records = []
    for index in range(n):
        case_seed = seed * 100_003 + index
        if cfg.image_type == "multichannel":
            pixels, details = (
                _cell_stack(case_seed, len(cfg.channels)),
                {"channels_present": [True] * len(cfg.channels)},
            )
        else:
            display = chest_radiograph(case_seed, shape=(96, 80)).display[None]  # (1, H, W)
            pixels = display if cfg.image_type == "grayscale" else np.repeat(display, 3, axis=0)
            details = {"color": "grayscale"}
        records.append(
            ImageRecord(
                pixels=pixels,
                spacing=(2.0, 2.0),
                source="synthetic",
                study_key=f"synthetic-{seed}-{index}",
                details={**details, "intensity": "display", "spacing_known": True},
            )
        )
    return records


def _cell_stack(seed: int, channels: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    """(channels, H, W) fluorescence-like stack: a few cells, each stain lighting a different compartment."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    stack = np.zeros((channels, *shape), dtype=np.float32)
    for _ in range(int(rng.integers(3, 7))):
        centre = rng.uniform(8, shape[0] - 8, 2)
        distance = np.hypot(rows - centre[0], columns - centre[1])
        for channel in range(channels):
            radius = 3.0 + 2.5 * channel % 9  # nucleus small, cytoplasm stains larger
            stack[channel] += np.exp(-((distance / radius) ** 2)) * rng.uniform(0.4, 1.0)
    stack += rng.normal(0, 0.02, stack.shape).astype(np.float32)
    return np.clip(stack, 0.0, 1.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic chest radiograph + report data set.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=64, help="number of studies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", type=int, nargs=2, default=(256, 256), help="pixels (rows, columns)")
    args = parser.parse_args(argv)
    manifest = write_cxr_dataset(args.out, args.n, args.seed, args.shape)
    print(f"wrote {args.n} phantom chest radiographs; manifest: {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
