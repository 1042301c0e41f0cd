"""Spatial transcriptomics: pair each spot of an ``.h5ad`` with the patch of its registered slide under it.

``obsm["spatial"]`` holds each spot's (x, y) centre in the pixel space of the slide it was registered to (Visium's
"full resolution" coordinates); ``scale`` maps other spaces onto level 0 (e.g. 1 / tissue_hires_scalef for hires
coordinates). Each spot becomes one manifest row: ``wsi`` = ``slide.tiff#mpp=M,cx=..,cy=..,size=S`` (the patch centred
on the spot at M microns per pixel), ``expression`` = ``sample.h5ad#row=i`` (read by the expression plugin), and
``site`` = the sample, so evaluation can break retrieval down per sample.

Command line: ``python -m modalities.wsi.spatial --pair a.h5ad a.tiff --pair b.h5ad b.tiff --out manifest.csv``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from medclip.data.safe_io import check_decoded_size, require_regular_file
from medclip.types import ModalityError

from .reference import format_reference


def spot_centres(h5ad: str | os.PathLike, scale: float = 1.0, max_decoded_mb: float = 2048.0) -> np.ndarray:
    """(n_spots, 2) float64 level-0 (x, y) spot centres from ``obsm["spatial"]``, read without loading the matrix.

    The file must be a regular file (checked before HDF5 opens it: a FIFO would block) and the coordinate array's
    declared size must fit ``max_decoded_mb`` before it is read.

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file``, ``no_spatial`` (no obsm["spatial"]), ``too_large``
            or ``unreadable`` (not a dense (n, 2+) array of finite numbers).
    """
    path = Path(h5ad)
    require_regular_file(path, ".h5ad")
    try:
        with h5py.File(path, "r") as handle:
            if "obsm" not in handle or "spatial" not in handle["obsm"]:
                raise ModalityError("no_spatial", 'the .h5ad file has no obsm["spatial"] spot coordinates')
            spatial = handle["obsm"]["spatial"]
            if not isinstance(spatial, h5py.Dataset) or spatial.dtype.kind not in "iuf":
                raise ModalityError("unreadable", 'obsm["spatial"] must be a dense array of numbers')
            check_decoded_size(spatial.shape, 8, max_decoded_mb, 'obsm["spatial"] array')
            centres = np.asarray(spatial[()], dtype=np.float64)
    except ModalityError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ModalityError("unreadable", f"could not read the .h5ad file ({type(error).__name__})") from None
    if centres.ndim != 2 or centres.shape[1] < 2 or not np.isfinite(centres[:, :2]).all():
        raise ModalityError("unreadable", 'obsm["spatial"] must be (n_spots, 2) finite coordinates')
    return centres[:, :2] * scale


def spot_rows(
    h5ad: str | os.PathLike,
    slide: str | os.PathLike,
    sample: str,
    mpp: float,
    size: int,
    scale: float = 1.0,
    relative_to: str | os.PathLike | None = None,
) -> list[dict[str, object]]:
    """One manifest row per spot: patient_id / site = ``sample``, wsi = the spot's patch, expression = its row.

    Args:
        h5ad: the sample's expression file with ``obsm["spatial"]``.
        slide: its registered slide.
        sample: the sample (and patient) name used in the manifest; choose a pseudonym, not a patient identifier.
        mpp: resolution of the patches.
        size: patch side in pixels at ``mpp``.
        scale: factor from ``obsm["spatial"]`` units to level-0 pixels.
        relative_to: write paths relative to this folder (the manifest's), when they lie under it.
    """
    centres = spot_centres(h5ad, scale)
    slide_cell, h5ad_cell = _cell_path(slide, relative_to), _cell_path(h5ad, relative_to)
    return [
        {
            "patient_id": sample,
            "study_id": f"{sample}-spot{index}",
            "site": sample,
            "wsi": format_reference(slide_cell, mpp=mpp, cx=round(float(cx), 2), cy=round(float(cy), 2), size=size),
            "expression": f"{h5ad_cell}#row={index}",
        }
        for index, (cx, cy) in enumerate(centres)
    ]


def _cell_path(path: str | os.PathLike, relative_to: str | os.PathLike | None) -> str:
    path = Path(path).absolute()
    if relative_to is not None:
        try:
            return path.relative_to(Path(relative_to).absolute()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def write_spatial_manifest(
    pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
    out: str | os.PathLike,
    mpp: float,
    size: int,
    samples: Sequence[str] | None = None,
    scale: float = 1.0,
) -> Path:
    """Write ``out`` (CSV) pairing every spot of every (h5ad, slide) pair with its patch; returns its path."""
    import pandas as pd

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(samples) if samples is not None else [f"sample{index}" for index in range(len(pairs))]
    if len(names) != len(pairs):
        raise ValueError(f"{len(names)} sample names for {len(pairs)} (h5ad, slide) pairs")
    rows = []
    for (h5ad, slide), name in zip(pairs, names, strict=True):
        rows.extend(spot_rows(h5ad, slide, name, mpp, size, scale, relative_to=out.parent))
    pd.DataFrame(rows).to_csv(out, index=False)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modalities.wsi.spatial",
        description='Pair each spot of .h5ad files (obsm["spatial"]) with the patch of its registered slide.',
    )
    parser.add_argument("--pair", nargs=2, action="append", required=True, metavar=("H5AD", "SLIDE"))
    parser.add_argument("--sample", action="append", help="sample name per --pair (default sample0, sample1, ...)")
    parser.add_argument("--out", required=True, help="manifest CSV to write")
    parser.add_argument("--mpp", type=float, default=0.5, help="patch resolution in microns per pixel")
    parser.add_argument("--size", type=int, default=224, help="patch side in pixels at --mpp")
    parser.add_argument("--scale", type=float, default=1.0, help='obsm["spatial"] units -> level-0 pixels')
    args = parser.parse_args(argv)
    path = write_spatial_manifest(args.pair, args.out, args.mpp, args.size, args.sample, args.scale)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
