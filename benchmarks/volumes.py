"""Volume loading throughput: plain MONAI vs MONAI PersistentDataset vs medclip's cached CT loader, in one run.

All three read the same synthetic int16 CT volumes written as NIfTI (.nii.gz) and produce the same target: RAS,
resampled to a fixed spacing, one HU window scaled to [0, 1], centre crop/pad to a fixed size. Reported per pipeline:
volumes/s through a ``DataLoader`` with ``--workers`` worker processes (batch size 1), cold (first pass) and warm
(second pass, caches filled), and the cache size next to the float32 size of the outputs.

    python benchmarks/volumes.py                # the issue's sizes: 512x512x200 -> 224x224x160
    python benchmarks/volumes.py --quick        # 128x128x50 -> 56x56x40, a few seconds

Targets (issue 3): medclip's first pass no slower than plain MONAI; warm >= 3x PersistentDataset and >= 200
volumes/s with 2 workers; cache <= 0.5x the float32 size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("MEDCLIP_PSEUDONYM_KEY", "medclip-benchmark-key-not-secret")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

LUNG_WINDOW = (-600.0, 1500.0)  # level, width (HU)


def write_volumes(folder: Path, count: int, shape: tuple[int, int, int], spacing: tuple[float, float, float]):
    """``count`` int16 chest-like volumes (air, body, lungs, noise) as .nii.gz with a RAS affine."""
    from modalities.ct.phantom import write_nifti
    from modalities.volume.phantom import chest_phantom

    paths = []
    for index in range(count):
        case = chest_phantom(index, shape=shape, spacing=spacing)
        path = folder / f"volume_{index:03d}.nii.gz"
        write_nifti(path, case.hounsfield, case.affine)
        paths.append(path)
    return paths


def monai_transforms(target_spacing, target_size):
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ResizeWithPadOrCropd,
        ScaleIntensityRanged,
        Spacingd,
    )

    level, width = LUNG_WINDOW
    return Compose(
        [
            LoadImaged(keys="image", image_only=True),
            EnsureChannelFirstd(keys="image"),
            Orientationd(keys="image", axcodes="RAS"),
            Spacingd(keys="image", pixdim=target_spacing, mode="bilinear"),
            ScaleIntensityRanged(
                keys="image", a_min=level - width / 2, a_max=level + width / 2, b_min=0.0, b_max=1.0, clip=True
            ),
            ResizeWithPadOrCropd(keys="image", spatial_size=target_size),
        ]
    )


class MedclipVolumes(Dataset):
    """The CT plugin's load (cache-aware) + eval transform, as the training data set runs them."""

    def __init__(self, paths, plugin) -> None:
        self.paths = paths
        self.plugin = plugin
        self.transform = plugin.transforms(plugin.config, train=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.transform(self.plugin.load(self.paths[index]))["ct"]


def _first_tensor(batch):
    return batch["image"] if isinstance(batch, dict) else batch


def timed_passes(dataset, workers: int, passes: int = 2) -> tuple[list[float], tuple[int, ...]]:
    """Volumes/s of each pass through one DataLoader (batch size 1, workers kept between passes), and the shape.

    The workers are started (and their imports paid) before the clock starts, so every pipeline is timed on loading
    alone; pass 1 is cold (caches empty), pass 2 warm.
    """
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, shuffle=False, persistent_workers=workers > 0)
    rates, shape = [], None
    iterator = iter(loader)  # starts the workers
    for _ in range(passes):
        start = time.perf_counter()
        for batch in iterator:
            shape = tuple(_first_tensor(batch).shape[1:])
        rates.append(len(dataset) / (time.perf_counter() - start))
        iterator = iter(loader)
    return rates, shape


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small volumes (128x128x50 -> 56x56x40)")
    parser.add_argument("--n", type=int, default=0, help="volumes (default 8, quick 32)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default="", help="working folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # what each DataLoader worker gets anyway; keeps the main process from competing

    if args.quick:
        shape, spacing, target_size = (128, 128, 50), (2.8, 2.8, 6.0), (56, 56, 40)
    else:
        shape, spacing, target_size = (512, 512, 200), (0.7, 0.7, 1.5), (224, 224, 160)
    target_spacing = tuple(s * n / t for s, n, t in zip(spacing, shape, target_size, strict=True))
    count = args.n or (32 if args.quick else 8)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="medclip-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(
            f"writing {count} volumes {shape} int16 at {spacing} mm -> target {target_size} at "
            f"{tuple(round(s, 3) for s in target_spacing)} mm, {args.workers} workers"
        )
        paths = write_volumes(work, count, shape, spacing)
        float32_bytes = count * int(np.prod(target_size)) * 4
        results = {}

        from monai.data import Dataset as MonaiDataset
        from monai.data import PersistentDataset

        transforms = monai_transforms(target_spacing, target_size)
        items = [{"image": str(path)} for path in paths]
        (cold, warm), out_shape = timed_passes(MonaiDataset(items, transforms), args.workers)
        results["MONAI plain"] = (cold, warm, None, out_shape)

        persistent_dir = work / "persistent"
        persistent = PersistentDataset(items, transforms, cache_dir=persistent_dir)
        (cold, warm), out_shape = timed_passes(persistent, args.workers)
        results["MONAI PersistentDataset"] = (cold, warm, folder_bytes(persistent_dir), out_shape)

        import medclip

        options = {
            "spacing": list(target_spacing),
            "size": list(target_size),
            "hu_windows": ["lung"],
            "cache_dir": str(work / "medclip-cache"),
            "patch_size": [8, 8, 8],
        }
        plugin = medclip.get_modality("ct", options)
        dataset = MedclipVolumes(paths, plugin)
        (cold, warm), out_shape = timed_passes(dataset, args.workers)
        results["medclip cached"] = (cold, warm, plugin.cache.size_bytes(), out_shape)

        print(f"\n{'pipeline':<26}{'cold vol/s':>12}{'warm vol/s':>12}{'cache MB':>10}{'x float32':>11}  output")
        for name, (cold, warm, size, out_shape) in results.items():
            cache = f"{size / 1e6:10.1f}{size / float32_bytes:11.2f}" if size is not None else f"{'-':>10}{'-':>11}"
            print(f"{name:<26}{cold:12.2f}{warm:12.2f}{cache}  {out_shape}")
        plain = results["MONAI plain"][0]
        ours_cold, ours_warm, ours_size, _ = results["medclip cached"]
        persistent_warm = results["MONAI PersistentDataset"][1]
        print("\ntargets:")
        print(f"  first pass vs plain MONAI: {ours_cold / plain:.2f}x (target >= 1)")
        print(f"  warm vs PersistentDataset warm: {ours_warm / persistent_warm:.2f}x (target >= 3)")
        print(f"  warm volumes/s: {ours_warm:.1f} (target >= 200 with 2 workers)")
        print(f"  cache size / float32: {ours_size / float32_bytes:.2f} (target <= 0.5)")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
