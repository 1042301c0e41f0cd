"""Slide patch reading: OpenSlide vs plain tiffslide vs medclip's reader vs raw tile read + decode, in one run.

One synthetic pyramidal JPEG TIFF (tifffile, 256-pixel tiles, 0.5 MPP), 256-pixel patches on the tile grid of level 0.
Pixels are checked identical across all readers first; then patches/s with 1 and 2 threads for each:

- openslide:  ``OpenSlide.read_region`` (RGBA PIL image -> array), its tile cache off (see below)
- tiffslide:  ``TiffSlide.read_region(..., as_array=True)``
- medclip:    ``Slide.read_patches`` (level choice at the target MPP, tile-aligned reads, threads)
- raw:        ``os.pread`` of the tile's bytes + ``imagecodecs.jpeg8_decode``: the floor any reader pays

Targets (issue 4): medclip >= 3x OpenSlide and >= 80% of raw, and medclip 2 threads >= 1.7x 1 thread. A GIL-free
control (sha256 in threads) shows how much 2-thread scaling the machine can give at that moment: on a shared box
busy with other processes, no reader can scale past it.

    python benchmarks/wsi.py            # 4096 x 4096 slide, 256 patches, best of 5
    python benchmarks/wsi.py --quick    # 2048 x 2048, 64 patches, best of 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATCH = 256


def run_once(read: Callable[[tuple[int, int]], np.ndarray], coords: list, pool: ThreadPoolExecutor | None) -> float:
    """Seconds to read every coordinate once, serially or with ``pool``."""
    start = time.perf_counter()
    if pool is None:
        for coord in coords:
            read(coord)
    else:
        list(pool.map(read, coords))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller slide and fewer repeats")
    parser.add_argument("--size", type=int, default=0, help="slide side in pixels (default 4096, quick 2048)")
    parser.add_argument("--repeats", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    size = args.size or (2048 if args.quick else 4096)
    repeats = args.repeats or (3 if args.quick else 5)

    import imagecodecs
    import openslide
    import tifffile
    import tiffslide

    from modalities.wsi.slide import Slide
    from modalities.wsi.synthetic import render_tissue, tissue_type_map, write_slide

    folder = Path(tempfile.mkdtemp(prefix="medclip-wsi-bench-"))
    rng = np.random.default_rng(0)
    path = write_slide(
        folder / "bench.tiff", render_tissue(tissue_type_map(size, size, rng, tissue_fraction=1.2), rng), mpp=0.5
    )
    coords = [(x, y) for y in range(0, size, PATCH) for x in range(0, size, PATCH)]

    via_openslide = openslide.OpenSlide(str(path))
    # No decoded-tile cache for OpenSlide: medclip's reader keeps none, and a slide larger than the cache (any real
    # one) reads each patch once per epoch, so repeats here must not be served from memory.
    via_openslide.set_cache(openslide.OpenSlideCache(0))
    via_tiffslide = tiffslide.TiffSlide(str(path))
    ours = Slide(path, "tiffslide")
    with tifffile.TiffFile(path) as handle:
        page = handle.pages[0]
        offsets, counts, tables = list(page.dataoffsets), list(page.databytecounts), page.jpegtables
    descriptor = os.open(path, os.O_RDONLY)
    across = size // PATCH

    def read_openslide(coord):
        return np.asarray(via_openslide.read_region(coord, 0, (PATCH, PATCH)))[:, :, :3]

    def read_tiffslide(coord):
        return via_tiffslide.read_region(coord, 0, (PATCH, PATCH), as_array=True)

    def read_medclip(coord):
        return ours.read_patch(coord[0], coord[1], PATCH, 0.5)

    def read_raw(coord):
        index = (coord[1] // PATCH) * across + coord[0] // PATCH
        return imagecodecs.jpeg8_decode(os.pread(descriptor, counts[index], offsets[index]), tables=tables)

    readers = {"openslide": read_openslide, "tiffslide": read_tiffslide, "medclip": read_medclip, "raw": read_raw}
    for coord in coords:  # identical pixels first
        reference = read_raw(coord)
        for name, read in readers.items():
            if not np.array_equal(read(coord), reference):
                print(f"PIXELS DIFFER: {name} at {coord}")
                return 1
    # Interleaved repeats: every reader is timed once per round, so load from other processes hits all alike.
    best: dict[tuple[str, int], float] = {}
    cases = [(name, threads) for name in [*readers, "medclip read_patches"] for threads in (1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(repeats):
            for name, threads in cases:
                if name == "medclip read_patches":  # the pipeline's own call: one call, its own threads
                    seconds = _timed(lambda threads=threads: ours.read_patches(coords, PATCH, 0.5, threads=threads))
                else:
                    seconds = run_once(readers[name], coords, pool if threads == 2 else None)
                best[name, threads] = min(best.get((name, threads), float("inf")), seconds)
    results = {name: {t: len(coords) / best[name, t] for t in (1, 2)} for name in [*readers, "medclip read_patches"]}
    results["control: sha256 (GIL-free)"] = gil_free_control(repeats)
    os.close(descriptor)

    print(f"slide {size}x{size} JPEG q90, 256-px tiles, {len(coords)} tile-aligned 256-px patches; best of {repeats}")
    print(f"pixels identical across openslide / tiffslide / medclip / raw: yes; cores: {os.cpu_count()}")
    print(f"{'reader':24s} {'1 thread':>10s} {'2 threads':>10s} {'scaling':>8s}   (patches/s)")
    for name, by_threads in results.items():
        print(f"{name:24s} {by_threads[1]:10.0f} {by_threads[2]:10.0f} {by_threads[2] / by_threads[1]:7.2f}x")
    ours_1, ours_2 = results["medclip read_patches"][1], results["medclip read_patches"][2]
    ratios = {
        "medclip / openslide (1 thread)": ours_1 / results["openslide"][1],
        "medclip / openslide (2 threads)": ours_2 / results["openslide"][2],
        "medclip / raw read+decode (1 thread)": ours_1 / results["raw"][1],
        "medclip / raw read+decode (2 threads)": ours_2 / results["raw"][2],
        "medclip / tiffslide (1 thread)": ours_1 / results["tiffslide"][1],
        "medclip 2-thread scaling": ours_2 / ours_1,
        "raw 2-thread scaling": results["raw"][2] / results["raw"][1],
        "control 2-thread scaling (the machine's ceiling now)": (
            results["control: sha256 (GIL-free)"][2] / results["control: sha256 (GIL-free)"][1]
        ),
    }
    targets = {
        "medclip / openslide (1 thread)": 3.0,
        "medclip / raw read+decode (1 thread)": 0.8,
        "medclip 2-thread scaling": 1.7,
    }
    print()
    for name, value in ratios.items():
        target = targets.get(name)
        verdict = "" if target is None else f"  target >= {target}: {'met' if value >= target else 'NOT met'}"
        print(f"{name:46s} {value:6.2f}{verdict}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"size": size, "patches": len(coords), "patches_per_s": results, "ratios": ratios}, indent=1)
        )
    for item in folder.iterdir():
        item.unlink()
    folder.rmdir()
    return 0


def gil_free_control(repeats: int) -> dict[int, float]:
    """Throughput (hashes/s) of sha256 over 4 MiB buffers with 1 and 2 threads: hashlib releases the GIL, so its
    2-thread scaling is what this machine can give right now (other processes share the cores)."""
    import hashlib

    buffer = b"\x5a" * (4 << 20)
    rounds = 32
    out = {}
    for threads in (1, 2):
        with ThreadPoolExecutor(max_workers=threads) as pool:
            seconds = min(
                _timed(lambda pool=pool: list(pool.map(lambda _: hashlib.sha256(buffer).digest(), range(rounds))))
                for _ in range(repeats)
            )
        out[threads] = rounds / seconds
    return out


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


if __name__ == "__main__":
    raise SystemExit(main())
