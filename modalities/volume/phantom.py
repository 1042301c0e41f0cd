"""A synthetic chest CT phantom in Hounsfield units, with findings a report can describe.

Anatomy (RAS millimetres, origin at the volume centre): air outside an elliptic body of soft tissue with a fat
layer, two lungs (-850 HU), a heart (40 HU) between them towards the patient's left and anterior, a spine (700 HU)
posterior. Findings drawn on top:

- ``nodule``: a 5-12 mm soft-tissue sphere inside one lung;
- ``effusion``: fluid (15 HU) filling the dependent (posterior) part of one lung;
- ``cardiomegaly``: the heart scaled up by 30-45 %.

Each case's sizes, positions and noise come from its own seed, so a phantom data set is reproducible. The values are
plausible for a chest CT, not a simulation of one; they exist so that CT-report training, zero-shot and retrieval can
be tried end to end on CPU before pointing medclip at an archive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FINDINGS = ("nodule", "effusion", "cardiomegaly")
AIR, FAT, SOFT_TISSUE, LUNG, BLOOD, BONE, FLUID = -1000, -100, 40, -850, 40, 700, 15


@dataclass
class PhantomCase:
    """One phantom study.

    Attributes:
        hounsfield: (I, J, K) int16 HU; the array axes point Right, Anterior, Superior (orientation "RAS").
        affine: (4, 4) RAS affine.
        findings: finding -> present.
        details: how each present finding looks (side, size), for the report text.
    """

    hounsfield: np.ndarray
    affine: np.ndarray
    findings: dict[str, bool]
    details: dict[str, dict[str, object]] = field(default_factory=dict)


def phantom_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """A RAS affine (indices increasing towards Right, Anterior, Superior) centred on the volume."""
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * np.asarray(spacing)
    return affine


def _ellipsoid(x, y, z, centre, radii) -> np.ndarray:
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + (
        (z - centre[2]) / radii[2]
    ) ** 2 <= 1


def chest_phantom(
    seed: int,
    shape: tuple[int, int, int] = (64, 64, 48),
    spacing: tuple[float, float, float] = (6.0, 6.0, 7.0),
    findings: dict[str, bool] | None = None,
    prevalence: float = 0.4,
) -> PhantomCase:
    """Draw one chest phantom.

    Args:
        seed: the case's seed (anatomy jitter, findings when not given, noise).
        shape: voxels along (Right, Anterior, Superior).
        spacing: mm per voxel along those axes.
        findings: which findings to draw; by default each is present with probability ``prevalence``.
        prevalence: probability of each finding when ``findings`` is None.
    """
    rng = np.random.default_rng(seed)
    if findings is None:
        findings = {name: bool(rng.random() < prevalence) for name in FINDINGS}
    affine = phantom_affine(shape, spacing)
    axes = [affine[axis, axis] * np.arange(shape[axis]) + affine[axis, 3] for axis in range(3)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)  # RAS mm; x > 0 is the patient's right
    size = rng.uniform(0.9, 1.1)  # body habitus
    volume = np.full(shape, AIR, dtype=np.float32)
    body_radii = (165 * size, 115 * size, 1e6)
    volume[_ellipsoid(x, y, z, (0, 0, 0), body_radii)] = FAT
    volume[_ellipsoid(x, y, z, (0, 0, 0), (body_radii[0] - 12, body_radii[1] - 12, 1e6))] = SOFT_TISSUE
    lung_radii = (55 * size, 75 * size, 120 * size)
    lungs = {}
    for side, sign in (("right", 1.0), ("left", -1.0)):
        centre = (sign * 75 * size, -5.0, 25.0)
        lungs[side] = (_ellipsoid(x, y, z, centre, lung_radii), centre)
        volume[lungs[side][0]] = LUNG
    details: dict[str, dict[str, object]] = {}
    heart_scale = 1.0
    if findings.get("cardiomegaly"):
        heart_scale = rng.uniform(1.3, 1.45)
        details["cardiomegaly"] = {"ratio": round(0.45 * heart_scale, 2)}
    heart = _ellipsoid(x, y, z, (-25.0, 30.0, -40.0), tuple(r * size * heart_scale for r in (45, 40, 50)))
    volume[heart] = BLOOD
    spine = ((x / 18.0) ** 2 + ((y + 90 * size) / 18.0) ** 2 <= 1) & np.ones_like(z, dtype=bool)
    volume[spine] = BONE
    if findings.get("effusion"):
        side = str(rng.choice(["right", "left"]))
        mask, centre = lungs[side]
        level = centre[1] - lung_radii[1] * rng.uniform(0.2, 0.5)  # fluid below this A-P level (dependent)
        volume[mask & (y < level) & ~heart] = FLUID
        details["effusion"] = {"side": side, "size": "moderate" if level > centre[1] - 0.3 * lung_radii[1] else "small"}
    if findings.get("nodule"):
        side = str(rng.choice(["right", "left"]))
        mask, centre = lungs[side]
        radius = rng.uniform(5.0, 12.0)
        for _ in range(100):  # a centre well inside the aerated lung
            point = np.asarray(centre) + rng.uniform(-0.5, 0.5, size=3) * np.asarray(lung_radii)
            index = np.round((point - affine[:3, 3]) / np.diag(affine)[:3]).astype(int)
            if all(0 <= index[a] < shape[a] for a in range(3)) and volume[tuple(index)] == LUNG:
                break
        volume[_ellipsoid(x, y, z, point, (radius, radius, radius))] = SOFT_TISSUE
        details["nodule"] = {"side": side, "size_mm": round(2 * radius)}
    volume += rng.normal(0.0, 12.0, size=shape).astype(np.float32)  # quantum noise
    hounsfield = np.clip(np.round(volume), -1024, 3071).astype(np.int16)
    return PhantomCase(hounsfield=hounsfield, affine=affine, findings=dict(findings), details=details)
