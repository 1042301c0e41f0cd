"""Semi-synthetic head CT <-> report studies from real anatomy, for ``benchmarks/ct_report_learning.py``.

The anatomy is the MNI152 (ICBM 2009a, symmetric) template that nilearn ships inside its wheel
(``nilearn/datasets/data/mni_icbm152_*``; ``pip install nilearn`` or ``pip install -e .[benchmarks]``). Its grey- and
white-matter probability maps become Hounsfield units (CSF ~5, white matter ~28, grey matter ~38 HU), with a skull
(bone) and scalp shell grown around the intracranial space. Every patient gets their own random rigid-plus-scale
pose, skull density, HU calibration offset and noise, and independently drawn findings of random size, position and
density:

- ``nodule``: a small bright sphere (calcified nodule / dense lesion), 150-400 HU, radius 3-7 mm;
- ``haemorrhage``: a hyperdense ellipsoid (acute haematoma), 60-85 HU, radii 7-16 mm;
- ``infarct``: a hypodense ellipsoid (established infarct), 8-18 HU, radii 9-20 mm.

Half the patients are written as NIfTI (nibabel), half as DICOM series (pydicom, one file per slice, shuffled file
names). Reports are written from the drawn findings with varied phrasing, laterality, lobe, size and explicit
negations; ``label:<finding>`` columns hold 1/0; the manifest's ``split`` column splits by patient.
"""

from __future__ import annotations

import csv
import importlib.util
import random
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from modalities.volume.dicom_write import write_dicom_series

FINDINGS = ("nodule", "haemorrhage", "infarct")
# finding -> (low, high) HU drawn per lesion; the test checks each written volume against these
FINDING_HU = {"nodule": (150.0, 400.0), "haemorrhage": (60.0, 85.0), "infarct": (8.0, 18.0)}
FINDING_RADIUS_MM = {"nodule": (3.0, 7.0), "haemorrhage": (7.0, 16.0), "infarct": (9.0, 20.0)}
PREVALENCE = 0.4
GRID_SPACING_MM = 3.0  # written voxel size: the ct plugin resamples to the config's spacing
GRID_SHAPE = (64, 76, 64)  # 19 x 23 x 19 cm: the whole head with its skull
INSTALL_HINT = (
    "the benchmark's anatomy is nilearn's MNI152 template: pip install nilearn (or pip install -e .[benchmarks])"
)


def template_folder() -> Path:
    """nilearn's bundled template folder, found without importing nilearn (its import pulls in sklearn, pandas)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(INSTALL_HINT)
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    if not (folder / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz").is_file():
        raise SystemExit(f"nilearn is installed but its MNI152 files are missing; {INSTALL_HINT}")
    return folder


@dataclass
class HeadAnatomy:
    """The template head in HU at 2 mm, and where lesions may go (deep inside the brain)."""

    tissue: np.ndarray  # (I, J, K) float32 HU of brain and CSF, -1000 outside the head, skull marked separately
    skull: np.ndarray  # (I, J, K) bool, bone
    brain: np.ndarray  # (I, J, K) bool, intracranial
    affine: np.ndarray  # (4, 4) RAS voxel -> mm


def load_head_anatomy() -> HeadAnatomy:
    """MNI152 grey/white-matter maps -> a 2 mm head in HU (brain, CSF, skull, scalp, air)."""
    folder = template_folder()
    maps = {}
    for name in ("t1", "gm", "wm"):
        image = nib.load(folder / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz")
        maps[name] = np.asarray(image.dataobj[::2, ::2, ::2], dtype=np.float32) / 255.0  # 1 -> 2 mm
        affine = image.affine.copy()
    affine[:3, :3] *= 2.0
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(maps["t1"] > 0.05, iterations=2))
    grey, white = maps["gm"], maps["wm"]
    csf = np.clip(1.0 - grey - white, 0.0, 1.0)
    tissue = 5.0 * csf + 38.0 * grey + 28.0 * white  # HU of CSF, grey and white matter
    outside = ndimage.distance_transform_edt(~brain) * 2.0  # mm from the intracranial space
    skull = (outside > 1.0) & (outside <= 7.0)
    scalp = (outside > 7.0) & (outside <= 11.0)
    tissue = np.where(brain, tissue, np.where(scalp | skull, 35.0, -1000.0)).astype(np.float32)
    return HeadAnatomy(tissue, skull, brain, affine)


@dataclass
class HeadCase:
    """One patient: the written HU volume, its affine, the findings drawn and where they were planted."""

    hounsfield: np.ndarray  # (I, J, K) int16
    affine: np.ndarray
    findings: dict[str, bool]
    details: dict[str, dict] = field(default_factory=dict)  # finding -> {hu, radius_mm, side, lobe}
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # finding -> (I, J, K) bool where it was planted


def _rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    angles = np.deg2rad(rng.uniform(-degrees, degrees, 3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _lobe(y_mm: float, z_mm: float) -> str:
    """A coarse lobe name from MNI coordinates (anterior y > 0, superior z)."""
    if y_mm > 10:
        return "frontal"
    if y_mm < -60:
        return "occipital"
    return "temporal" if z_mm < 5 else "parietal"


def head_case(anatomy: HeadAnatomy, seed: int) -> HeadCase:
    """Draw one patient: pose and calibration jitter, then findings planted in their own brain."""
    rng = np.random.default_rng(seed)
    grid_affine = np.diag([GRID_SPACING_MM] * 3 + [1.0])
    grid_affine[:3, 3] = -np.array(GRID_SHAPE) * GRID_SPACING_MM / 2 + np.array([0.0, -18.0, 18.0])  # centre the head
    pose = np.eye(4)  # patient mm -> template mm
    pose[:3, :3] = _rotation(rng, 8.0) * rng.uniform(0.92, 1.08)
    pose[:3, 3] = rng.uniform(-8.0, 8.0, 3)
    to_template = np.linalg.inv(anatomy.affine) @ pose @ grid_affine  # grid voxel -> template voxel
    matrix, offset = to_template[:3, :3], to_template[:3, 3]
    tissue = ndimage.affine_transform(anatomy.tissue, matrix, offset, GRID_SHAPE, order=1, cval=-1000.0)
    skull = ndimage.affine_transform(anatomy.skull.astype(np.float32), matrix, offset, GRID_SHAPE, order=1) > 0.5
    brain = ndimage.affine_transform(anatomy.brain.astype(np.float32), matrix, offset, GRID_SHAPE, order=1) > 0.5
    hounsfield = np.where(skull, rng.uniform(700.0, 1100.0), tissue)
    deep = ndimage.distance_transform_edt(brain) * GRID_SPACING_MM  # mm to the brain surface
    coordinates = np.indices(GRID_SHAPE).reshape(3, -1).T * GRID_SPACING_MM + grid_affine[:3, 3]  # (N, 3) mm
    findings, details, masks = {}, {}, {}
    for finding in FINDINGS:
        findings[finding] = bool(rng.random() < PREVALENCE)
        if not findings[finding]:
            continue
        radii = rng.uniform(*FINDING_RADIUS_MM[finding], 3)
        if finding == "nodule":
            radii[:] = radii[0]
        candidates = np.flatnonzero(deep.ravel() > radii.max() + 4.0)
        centre = coordinates[rng.choice(candidates)]
        inside = (((coordinates - centre) / radii) ** 2).sum(axis=1) <= 1.0
        mask = inside.reshape(GRID_SHAPE) & brain
        value = float(rng.uniform(*FINDING_HU[finding]))
        hounsfield = np.where(mask, value, hounsfield)
        template_centre = (pose @ np.append(centre, 1.0))[:3]
        details[finding] = {
            "hu": round(value),
            "radius_mm": float(radii.max()),
            "side": "right" if template_centre[0] > 0 else "left",  # RAS: +x points to the patient's right
            "lobe": _lobe(template_centre[1], template_centre[2]),
        }
        masks[finding] = mask
    hounsfield = hounsfield + rng.uniform(-8.0, 8.0) + rng.normal(0.0, rng.uniform(2.0, 6.0), GRID_SHAPE)
    hounsfield = np.clip(np.rint(hounsfield), -1024, 3000).astype(np.int16)
    return HeadCase(hounsfield, grid_affine, findings, details, masks)


POSITIVE = {
    "nodule": (
        "A {size} mm calcified nodule is seen in the {side} {lobe} lobe.",
        "There is a small dense nodular focus in the {side} {lobe} region measuring {size} mm.",
        "Punctate hyperdense nodule, {size} mm, {side} {lobe}.",
        "{Side} {lobe} calcified nodule of {size} mm.",
    ),
    "haemorrhage": (
        "There is an acute intraparenchymal haemorrhage in the {side} {lobe} lobe measuring {size} mm.",
        "A hyperdense haematoma is present in the {side} {lobe} region, {size} mm across.",
        "{Side} {lobe} intracerebral haemorrhage, approximately {size} mm.",
        "Acute bleed within the {side} {lobe} lobe.",
    ),
    "infarct": (
        "There is a hypodense region in the {side} {lobe} lobe consistent with an infarct.",
        "An established {side} {lobe} infarct is noted, about {size} mm.",
        "Area of low attenuation in the {side} {lobe} territory in keeping with ischaemic infarction.",
        "{Side} {lobe} hypodensity compatible with infarct.",
    ),
}
NEGATIVE = {
    "nodule": ("No calcified nodule.", "No focal nodular lesion is seen.", "There is no dense nodule."),
    "haemorrhage": (
        "No intracranial haemorrhage.",
        "There is no evidence of haemorrhage.",
        "No acute bleed is identified.",
    ),
    "infarct": ("No established infarct.", "No focal hypodensity to suggest infarction.", "There is no infarct."),
}
IMPRESSION = {
    "nodule": ("Calcified nodule.", "Dense nodular focus, likely calcified."),
    "haemorrhage": ("Acute intracranial haemorrhage.", "Intraparenchymal haematoma."),
    "infarct": ("Established infarct.", "Ischaemic infarction."),
}
FILLER = (
    "The ventricles are normal in size.",
    "No midline shift.",
    "The visualised paranasal sinuses are clear.",
    "Grey-white matter differentiation is otherwise preserved.",
    "The calvarium is intact.",
    "Basal cisterns are patent.",
)


def head_report(case: HeadCase, seed: int) -> str:
    """A report naming exactly the case's findings, in shuffled order, with negations and filler sentences."""
    rng = random.Random(seed)
    sentences, impressions = [], []
    for finding in FINDINGS:
        if case.findings[finding]:
            detail = case.details[finding]
            template = rng.choice(POSITIVE[finding])
            sentences.append(
                template.format(
                    size=round(2 * detail["radius_mm"]),
                    side=detail["side"],
                    Side=detail["side"].capitalize(),
                    lobe=detail["lobe"],
                )
            )
            impressions.append(rng.choice(IMPRESSION[finding]))
        elif rng.random() < 0.8:  # most reports state the negative, some leave it unsaid
            sentences.append(rng.choice(NEGATIVE[finding]))
    sentences += rng.sample(FILLER, rng.randint(1, 3))
    rng.shuffle(sentences)
    if not impressions:
        impressions = [rng.choice(("No acute intracranial abnormality.", "Normal CT head.", "Unremarkable study."))]
    return "\n".join(["EXAMINATION: CT HEAD", "", "FINDINGS:", " ".join(sentences), "", "IMPRESSION:", *impressions])


def write_head_dataset(out: str | Path, n: int = 160, seed: int = 0, split: tuple[float, float] = (0.15, 0.15)) -> Path:
    """Write ``n`` head CT studies (even rows NIfTI, odd rows DICOM series) + reports + manifest.csv.

    Args:
        out: output folder (volumes/, dicom/, reports/, manifest.csv).
        n: patients (one study each).
        seed: the data set's seed.
        split: (val, test) fractions of patients, written to the manifest's ``split`` column.

    Returns:
        The manifest path.
    """
    out = Path(out)
    for folder in ("volumes", "dicom", "reports"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    anatomy = load_head_anatomy()
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(split[0] * n), round(split[1] * n)
    split_of = {int(index): "test" for index in order[:n_test]}
    split_of |= {int(index): "val" for index in order[n_test : n_test + n_val]}
    rows = []
    for index in range(n):
        case_seed = seed * 1_000_003 + index
        case = head_case(anatomy, case_seed)
        name = f"head_{index:04d}"
        if index % 2 == 0:
            image = nib.Nifti1Image(case.hounsfield, case.affine)
            image.set_sform(case.affine, code=1)
            image.set_qform(case.affine, code=1)
            nib.save(image, out / "volumes" / f"{name}.nii.gz")
            cell = f"volumes/{name}.nii.gz"
        else:
            write_dicom_series(out / "dicom" / name, case.hounsfield, case.affine, shuffle_seed=case_seed)
            cell = f"dicom/{name}"
        (out / "reports" / f"{name}.txt").write_text(head_report(case, case_seed))
        row = {"patient_id": f"head-{index:04d}", "study_id": name, "split": split_of.get(index, "train"), "ct": cell}
        row["report"] = f"reports/{name}.txt"
        row |= {f"label:{finding}": int(case.findings[finding]) for finding in FINDINGS}
        rows.append(row)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest
