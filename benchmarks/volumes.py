"""Volume loading throughput: plain MONAI vs MONAI PersistentDataset vs medclip's cached CT loader, in one run.

All three read the same synthetic int16 CT volumes written as NIfTI (.nii.gz) and produce the same target: RAS,
resampled to a fixed spacing, one HU window scaled to [0, 1], centre crop/pad to a fixed size. Reported per pipeline
and worker kind: volumes/s with ``--workers`` workers (batch size 1), cold (first pass) and warm (second pass, caches
filled), and the cache size next to the float32 size of the outputs. Worker kinds (``--worker-kind``, default both):
"process" is torch's ``DataLoader`` with worker processes, "thread" is medclip's ``ThreadLoader`` (worker threads);
every pipeline runs under both, each kind with its own empty caches, so the comparison is loader-for-loader.

    python benchmarks/volumes.py                # the issue's sizes: 512x512x200 -> 224x224x160
    python benchmarks/volumes.py --quick        # 128x128x50 -> 56x56x40, a few seconds

Targets (issue 3): medclip's first pass no slower than plain MONAI; warm >= 3x PersistentDataset and >= 200
volumes/s with 2 workers; cache <= 0.5x the float32 size. Warm ratios are printed against PersistentDataset under the
same worker kind and against PersistentDataset in its standard form (DataLoader worker processes).
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
from torch.utils.data import Dataset, default_collate  # noqa: E402

from medclip.data.loader import WORKER_KINDS, make_loader  # noqa: E402

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
        self.transform = plugin.transforms(train=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.transform(self.plugin.load(self.paths[index]))


class MedclipCollate:
    """The CT plugin's own collate (what the trainer uses), returning the (B, C, I, J, K) float16 batch."""

    def __init__(self, plugin) -> None:
        self.plugin = plugin

    def __call__(self, samples):
        return self.plugin.collate(samples)["ct"]


def _first_tensor(batch):
    return batch["image"] if isinstance(batch, dict) else batch


def timed_passes(
    dataset, workers: int, kind: str, warm_passes: int = 1, collate=default_collate
) -> tuple[float, float, tuple[int, ...]]:
    """Volumes/s of the first (cold) pass and of ``warm_passes`` more passes together (warm), and the output shape.

    One loader of ``kind`` (batch size 1, workers kept between passes). The workers are started (and their imports
    paid) before the clock starts, so every pipeline is timed on loading alone. A warm pass over a few cached volumes
    takes tens of milliseconds, so several are timed together for a stable rate.
    """
    loader = make_loader(
        dataset,
        batch_size=1,
        collate_fn=collate,
        num_workers=workers,
        worker_kind=kind,
        persistent_workers=workers > 0,
    )
    shape = None
    iterator = iter(loader)  # starts the workers
    rates = []
    for passes in (1, warm_passes):
        start = time.perf_counter()
        for _ in range(passes):
            for batch in iterator:
                shape = tuple(_first_tensor(batch).shape[1:])
            iterator = iter(loader)
        rates.append(passes * len(dataset) / (time.perf_counter() - start))
    return rates[0], rates[1], shape


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def run_pipelines(paths, work: Path, kind: str, workers: int, target_spacing, target_size, warm_passes: int) -> dict:
    """(pipeline, kind) -> (cold vol/s, warm vol/s, cache bytes or None, output shape), caches under ``work``."""
    from monai.data import Dataset as MonaiDataset
    from monai.data import PersistentDataset

    import medclip

    results = {}
    transforms = monai_transforms(target_spacing, target_size)
    items = [{"image": str(path)} for path in paths]
    cold, warm, out_shape = timed_passes(MonaiDataset(items, transforms), workers, kind)
    results[("MONAI plain", kind)] = (cold, warm, None, out_shape)

    persistent_dir = work / "persistent"
    persistent = PersistentDataset(items, transforms, cache_dir=persistent_dir)
    cold, warm, out_shape = timed_passes(persistent, workers, kind, warm_passes)
    results[("MONAI PersistentDataset", kind)] = (cold, warm, folder_bytes(persistent_dir), out_shape)

    options = {
        "spacing": list(target_spacing),
        "size": list(target_size),
        "hu_windows": ["lung"],
        "cache_dir": str(work / "medclip-cache"),
        "patch_size": [8, 8, 8],
        # evaluation loading: no random HU shift, so the window is deterministic and cached with the geometry
        "augment": False,
    }
    plugin = medclip.get_modality("ct", options)
    dataset = MedclipVolumes(paths, plugin)
    cold, warm, out_shape = timed_passes(dataset, workers, kind, warm_passes, collate=MedclipCollate(plugin))
    results[("medclip cached", kind)] = (cold, warm, plugin.cache.size_bytes(), out_shape)
    return results


def report(results: dict, kinds: list[str], float32_bytes: int) -> None:
    """The table, then each target per worker kind (warm ratios against PersistentDataset, same and process kind)."""
    header = f"{'pipeline':<26}{'workers':>9}{'cold vol/s':>12}{'warm vol/s':>12}{'cache MB':>10}{'x float32':>11}"
    print(f"\n{header}  output")
    for (name, kind), (cold, warm, size, out_shape) in results.items():
        cache = f"{size / 1e6:10.1f}{size / float32_bytes:11.2f}" if size is not None else f"{'-':>10}{'-':>11}"
        print(f"{name:<26}{kind:>9}{cold:12.2f}{warm:12.2f}{cache}  {out_shape}")
    reference_kind = "process" if "process" in kinds else kinds[0]
    standard = results[("MONAI PersistentDataset", reference_kind)][1]
    for kind in kinds:
        plain = results[("MONAI plain", kind)][0]
        ours_cold, ours_warm, ours_size, _ = results[("medclip cached", kind)]
        persistent_warm = results[("MONAI PersistentDataset", kind)][1]
        print(f"\ntargets, medclip with {kind} workers:")
        print(f"  first pass vs plain MONAI ({kind} workers): {ours_cold / plain:.2f}x (target >= 1)")
        print(
            f"  warm vs PersistentDataset warm, same loader ({kind} workers): "
            f"{ours_warm / persistent_warm:.2f}x (target >= 3)"
        )
        print(
            f"  warm vs PersistentDataset warm in its standard form ({reference_kind} workers): "
            f"{ours_warm / standard:.2f}x (target >= 3)"
        )
        print(f"  warm volumes/s: {ours_warm:.1f} (target >= 200 with 2 workers)")
        print(f"  cache size / float32: {ours_size / float32_bytes:.2f} (target <= 0.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small volumes (128x128x50 -> 56x56x40)")
    parser.add_argument("--n", type=int, default=0, help="volumes (default 8, quick 32)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--worker-kind", default="both", choices=[*WORKER_KINDS, "both"], help="loader workers (default: both)"
    )
    parser.add_argument("--warm-passes", type=int, default=10, help="warm passes timed together (cached pipelines)")
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
    kinds = list(WORKER_KINDS) if args.worker_kind == "both" else [args.worker_kind]
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="medclip-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(
            f"writing {count} volumes {shape} int16 at {spacing} mm -> target {target_size} at "
            f"{tuple(round(s, 3) for s in target_spacing)} mm, {args.workers} workers ({', '.join(kinds)}); "
            f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '(unset)')}"
        )
        paths = write_volumes(work, count, shape, spacing)
        float32_bytes = count * int(np.prod(target_size)) * 4
        results = {}
        for kind in kinds:
            measured = run_pipelines(
                paths, work / kind, kind, args.workers, target_spacing, target_size, args.warm_passes
            )
            results.update(measured)
        report(results, kinds, float32_bytes)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
