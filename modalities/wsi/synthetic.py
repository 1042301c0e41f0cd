"""Synthetic H&E-like tissue, pyramidal TIFF slides and a small spatial-transcriptomics dataset.

Everything here is procedural and seeded, so tests, demos and benchmarks need no real data:

- ``render_tissue``: an RGB image from a map of tissue types, each with its own stroma colour, nucleus colour,
  nucleus density and nucleus size (texture), around a glass-white background.
- ``write_slide``: a pyramidal, tiled, JPEG-compressed TIFF with resolution (MPP) tags, written with tifffile; both
  tiffslide and OpenSlide read it (OpenSlide as "generic-tiff").
- ``write_spatial_dataset``: several samples (one slide + one ``.h5ad`` each, as a Visium sample comes) whose spot
  expression is driven by the tissue types under each spot, plus ``manifest.csv`` pairing each spot's patch with its
  expression. Run it as ``python -m modalities.wsi.synthetic --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from medclip.types import Sample

GLASS = (242, 241, 239)  # the off-white of an empty slide


@dataclass(frozen=True)
class TissueType:
    """How one tissue type looks: stroma and nucleus colours, nucleus density (area fraction) and size (blur sigma)."""

    stroma: tuple[int, int, int]
    nucleus: tuple[int, int, int]
    density: float
    nucleus_sigma: float


TISSUE_TYPES = (
    TissueType(stroma=(205, 125, 175), nucleus=(75, 45, 125), density=0.35, nucleus_sigma=2.5),  # tumour-like
    TissueType(stroma=(236, 152, 182), nucleus=(115, 65, 145), density=0.08, nucleus_sigma=1.2),  # stroma-like
    TissueType(stroma=(214, 142, 192), nucleus=(52, 32, 112), density=0.50, nucleus_sigma=1.0),  # lymphoid-like
    TissueType(stroma=(246, 214, 226), nucleus=(150, 112, 172), density=0.04, nucleus_sigma=3.0),  # fat-like
)
BACKGROUND = -1  # label of glass in a type map


def render_tissue(types: np.ndarray, rng: np.random.Generator, stain: float = 1.0) -> np.ndarray:
    """(H, W) int type map (``BACKGROUND`` = glass) -> (H, W, 3) uint8 RGB.

    Args:
        types: tissue type index per pixel, or ``BACKGROUND``.
        rng: the random generator (nuclei placement and noise).
        stain: per-sample stain strength; below 1 is paler, above 1 darker (a batch effect between samples).
    """
    height, width = types.shape
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = GLASS
    for index, tissue in enumerate(TISSUE_TYPES):
        where = types == index
        if not where.any():
            continue
        field = ndimage.gaussian_filter(rng.standard_normal((height, width)).astype(np.float32), tissue.nucleus_sigma)
        cut = np.quantile(field[where], 1.0 - tissue.density)
        nuclei = where & (field > cut)  # (H, W)
        stroma = 255.0 - (255.0 - np.asarray(tissue.stroma, np.float32)) * stain
        nucleus = 255.0 - (255.0 - np.asarray(tissue.nucleus, np.float32)) * stain
        image[where] = stroma
        image[nuclei] = nucleus
    image += rng.normal(0.0, 4.0, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def tissue_type_map(
    height: int, width: int, rng: np.random.Generator, regions: int = 12, block: int = 8, tissue_fraction: float = 0.7
) -> np.ndarray:
    """(H, W) int map: an irregular tissue blob cut into Voronoi regions of random types; glass around it.

    Computed on a ``block``-times coarser grid and enlarged, so region borders are ``block``-pixel steps.
    """
    small_h, small_w = -(-height // block), -(-width // block)
    yy, xx = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    yy, xx = yy / small_h - 0.5, xx / small_w - 0.5
    wobble = ndimage.gaussian_filter(rng.standard_normal((small_h, small_w)).astype(np.float32), 6.0)
    wobble /= np.abs(wobble).max() + 1e-6
    radius = np.sqrt(xx**2 + yy**2) + 0.08 * wobble
    inside = radius < np.sqrt(tissue_fraction / np.pi)  # (h, w): a blob covering about tissue_fraction
    seeds = rng.uniform(-0.5, 0.5, size=(regions, 2)).astype(np.float32)  # (R, 2) region centres (y, x)
    seed_types = rng.integers(0, len(TISSUE_TYPES), size=regions)
    seed_types[: len(TISSUE_TYPES)] = np.arange(len(TISSUE_TYPES))  # every type occurs
    distance = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2  # (R, h, w)
    small = np.where(inside, seed_types[distance.argmin(axis=0)], BACKGROUND)
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1)[:height, :width]


def downsample_half(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H/2, W/2, 3) by 2x2 averaging (the next pyramid level)."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    blocks = image[:height, :width].reshape(height // 2, 2, width // 2, 2, 3).astype(np.float32)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


def write_slide(
    path: str | os.PathLike,
    image: np.ndarray,
    mpp: float | None = 0.5,
    levels: int = 3,
    tile: int = 256,
    quality: int = 90,
    compression: str = "jpeg",
    associated: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``image`` (H, W, 3) uint8 as a pyramidal tiled TIFF: level k is 2^k times smaller, each a main IFD.

    Args:
        path: the output file.
        image: level 0.
        mpp: microns per level-0 pixel, stored as X/YResolution in pixels per centimetre; None writes no resolution.
        levels: pyramid levels (including level 0).
        tile: tile side in pixels.
        quality: JPEG quality.
        compression: "jpeg" (what scanners write), or another tifffile codec name (e.g. "zlib").
        associated: extra non-pyramid images written after the levels, named by their ImageDescription (e.g.
            {"label": ..., "macro": ...}), as scanners store the slide label and overview photo.
    """
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    level_image = np.ascontiguousarray(image)
    with tifffile.TiffWriter(path) as writer:
        for level in range(levels):
            options: dict = {
                "tile": (tile, tile),
                "compression": compression,
                "photometric": "rgb",
                "subfiletype": 0 if level == 0 else 1,  # 1 = reduced-resolution image (a pyramid level)
                "metadata": None,
            }
            if compression == "jpeg":
                options["compressionargs"] = {"level": quality}
            if mpp is not None:
                pixels_per_cm = 1e4 / (mpp * 2**level)
                options["resolution"] = (pixels_per_cm, pixels_per_cm)
                options["resolutionunit"] = "CENTIMETER"
            writer.write(level_image, **options)
            if level + 1 < levels:
                level_image = downsample_half(level_image)
        for name, picture in (associated or {}).items():
            subfile_type = 9 if name == "macro" else 1  # Aperio's NewSubfileType of the macro / label images
            writer.write(picture, compression=compression, photometric="rgb", subfiletype=subfile_type,
                         description=name, metadata=None)  # fmt: skip
    return path


def synthetic_patches(n: int, patch_size: int, seed: int = 0, per_sample: int = 2) -> list[tuple[np.ndarray, int]]:
    """``n`` bags of ``per_sample`` single-type patches -> [(patches (P, S, S, 3) uint8, tissue type)]."""
    rng = np.random.default_rng(seed)
    bags = []
    for _ in range(n):
        tissue = int(rng.integers(0, len(TISSUE_TYPES)))
        types = np.full((patch_size, patch_size), tissue, dtype=np.int64)
        bags.append((np.stack([render_tissue(types, rng) for _ in range(per_sample)]), tissue))
    return bags


def synthetic_samples(n: int, patch_size: int, mpp: float, seed: int = 0) -> list[Sample]:
    """Loaded slide-level samples as ``WSIModality.load`` returns them: 2 tissue patches each, with coordinates."""
    samples = []
    for bag, _ in synthetic_patches(n, patch_size, seed):
        coords = np.array([[0, 0], [patch_size, 0]], dtype=np.int64)[: len(bag)]  # neighbouring grid patches
        meta = {
            "kind": "slide",
            "mpp": mpp,
            "patch_size": patch_size,
            "extent": float(patch_size),
            "n_patches": len(bag),
            "reader": "synthetic",
        }
        samples.append({"wsi": bag, "wsi_coords": coords, "wsi_meta": meta})
    return samples


# --- a spatial transcriptomics dataset -------------------------------------------------------------------------------
GENES = 120
MARKERS_PER_TYPE = 10
SPOT_SPACING_UM = 100.0  # Visium: spot centres 100 microns apart
SPOT_DIAMETER_UM = 55.0  # Visium spot diameter


def expression_programs(genes: int = GENES, seed: int = 777) -> tuple[np.ndarray, np.ndarray]:
    """Gene baselines (G,) and per-tissue-type fold changes (T, G): the fixed biology of the synthetic dataset."""
    rng = np.random.default_rng(seed)
    baseline = rng.lognormal(0.0, 1.0, size=genes)
    programs = np.ones((len(TISSUE_TYPES), genes))
    for index in range(len(TISSUE_TYPES)):
        markers = rng.choice(genes, size=MARKERS_PER_TYPE, replace=False)
        programs[index, markers] = rng.uniform(4.0, 10.0, size=MARKERS_PER_TYPE)
    return baseline, programs


def spot_composition(types: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """Fraction of each tissue type (and glass, last column) inside each spot disc -> (n_spots, T + 1)."""
    composition = np.zeros((len(centres), len(TISSUE_TYPES) + 1))
    offsets = np.arange(-int(radius), int(radius) + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    disc = dy**2 + dx**2 <= radius**2
    for spot, (cx, cy) in enumerate(centres):
        ys = np.clip(int(round(cy)) + dy[disc], 0, types.shape[0] - 1)
        xs = np.clip(int(round(cx)) + dx[disc], 0, types.shape[1] - 1)
        labels = types[ys, xs]
        labels = np.where(labels == BACKGROUND, len(TISSUE_TYPES), labels)
        composition[spot] = np.bincount(labels, minlength=len(TISSUE_TYPES) + 1) / labels.size
    return composition


def write_spatial_dataset(
    out: str | os.PathLike,
    samples: int = 6,
    size: int = 2048,
    mpp: float = 0.5,
    patch_mpp: float = 1.0,
    patch_size: int = 64,
    seed: int = 0,
    splits: tuple[str, ...] | None = None,
) -> Path:
    """Write ``samples`` slide + ``.h5ad`` pairs and ``manifest.csv`` under ``out``; returns the manifest path.

    Spots sit on a 100-micron grid over the tissue (Visium-like); a spot's counts are negative binomial around a
    baseline raised by the marker programs of the tissue types under it, so expression is predictable from the
    texture and colour of its patch. Each sample has its own stain strength and sequencing depth: a batch effect,
    which is why evaluation breaks retrieval down per sample (``site`` column).

    Args:
        out: output folder (``slides/``, ``expression/``, ``manifest.csv``, ``dataset.json``).
        samples: number of samples (one patient, slide and site each).
        size: level-0 side of each slide in pixels.
        mpp: level-0 microns per pixel of the slides.
        patch_mpp: resolution of the spot patches in the manifest.
        patch_size: spot patch side in pixels at ``patch_mpp``.
        seed: base seed.
        splits: split per sample (default: the last two test, the one before val, the rest train), so the test
            split has two samples to break retrieval down by.
    """
    import anndata
    import pandas as pd

    from modalities.expression.synthetic import synthetic_gene_names

    from .spatial import spot_rows

    out = Path(out)
    (out / "slides").mkdir(parents=True, exist_ok=True)
    (out / "expression").mkdir(parents=True, exist_ok=True)
    if splits is None:
        held_out = ["val", "test", "test"] if samples >= 5 else ["test"] if samples >= 2 else []
        splits = tuple(["train"] * (samples - len(held_out)) + held_out)
    if len(splits) != samples:
        raise ValueError(f"splits names {len(splits)} samples, expected {samples}")
    baseline, programs = expression_programs()
    genes = synthetic_gene_names(GENES)
    rows = []
    spacing = SPOT_SPACING_UM / mpp  # level-0 pixels between spot centres
    radius = SPOT_DIAMETER_UM / 2 / mpp
    for sample in range(samples):
        rng = np.random.default_rng(seed * 1000 + sample)
        stain = float(rng.uniform(0.8, 1.15))
        types = tissue_type_map(size, size, rng)
        write_slide(out / "slides" / f"sample{sample}.tiff", render_tissue(types, rng, stain), mpp=mpp)
        positions = np.arange(spacing / 2, size - spacing / 2 + 1, spacing)
        grid = np.array([(x, y) for y in positions for x in positions], dtype=np.float64)  # (n, 2) centres (x, y)
        composition = spot_composition(types, grid, radius)
        on_tissue = composition[:, -1] < 0.5  # spots mostly over tissue, as Visium keeps "in tissue" spots
        grid, composition = grid[on_tissue], composition[on_tissue, :-1]
        mean_profile = baseline * (1.0 + composition @ (programs - 1.0))  # (n, G)
        mean_profile /= mean_profile.sum(axis=1, keepdims=True)
        depth = 3000.0 * rng.uniform(0.6, 1.4) * rng.lognormal(0.0, 0.3, size=(len(grid), 1))
        mean = mean_profile * depth
        counts = rng.negative_binomial(2.0, 2.0 / (2.0 + mean)).astype(np.float32)  # (n, G)
        counts[counts.sum(axis=1) == 0, 0] = 1.0  # no empty spot (expression refuses all-zero observations)
        obs = pd.DataFrame(
            {"sample": [f"sample{sample}"] * len(grid), "tissue_type": composition.argmax(axis=1).astype(str)},
            index=[f"spot{index}" for index in range(len(grid))],
        )
        adata = anndata.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=genes))
        adata.obsm["spatial"] = grid.astype(np.float64)
        adata.uns["spatial"] = {
            f"sample{sample}": {"scalefactors": {"spot_diameter_fullres": 2 * radius, "tissue_hires_scalef": 1.0}}
        }
        adata.write_h5ad(out / "expression" / f"sample{sample}.h5ad")
        spots = spot_rows(
            out / "expression" / f"sample{sample}.h5ad",
            out / "slides" / f"sample{sample}.tiff",
            f"sample{sample}",
            patch_mpp,
            patch_size,
            relative_to=out,
        )
        for spot, mixture in zip(spots, composition, strict=True):
            rows.append({**spot, "split": splits[sample], "label:tumour_like": int(mixture.argmax() == 0)})
    manifest = out / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    (out / "dataset.json").write_text(
        json.dumps(
            {
                "samples": samples,
                "spots": len(rows),
                "slide_size": size,
                "slide_mpp": mpp,
                "patch_mpp": patch_mpp,
                "patch_size": patch_size,
                "genes": GENES,
                "splits": list(splits),
            },
            indent=1,
        )
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modalities.wsi.synthetic",
        description="Write a small synthetic spatial-transcriptomics dataset (slides, .h5ad files, manifest.csv).",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--samples", type=int, default=6, help="samples (slide + .h5ad each)")
    parser.add_argument("--size", type=int, default=2048, help="level-0 slide side in pixels")
    parser.add_argument("--mpp", type=float, default=0.5, help="level-0 microns per pixel")
    parser.add_argument("--patch-mpp", type=float, default=1.0, help="resolution of the spot patches")
    parser.add_argument("--patch-size", type=int, default=64, help="spot patch side in pixels at --patch-mpp")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = write_spatial_dataset(
        args.out, args.samples, args.size, args.mpp, args.patch_mpp, args.patch_size, args.seed
    )
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
