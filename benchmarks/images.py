"""2-D image loading throughput: torchvision's standard pipeline vs medclip's cached image loader, in one run.

Both read the same 8-bit grayscale chest radiograph PNGs (phantoms at 1024 x 1024, the size and format of the NIH
ChestX-ray14 release) and produce the same target: (3, 224, 224) float32, aspect kept (resize the long side, pad
the short side with black), grayscale repeated to RGB, normalised with ImageNet's mean and std (the backbone's
constants). torchvision: ``PIL.Image.open`` -> ``PILToTensor`` -> ``ToDtype(scale)`` -> ``Resize(max_size)`` ->
``CenterCrop`` (pads) -> repeat -> ``Normalize``, in a ``DataLoader``. medclip: the image plugin's load (cache-aware)
+ evaluation transform + collate in its loader, then the encoder's own input step (repeat + normalise) on the batch,
timed with the loading. The outputs are compared first (max abs difference printed; float16 storage bounds it).

Reported per pipeline and worker kind: images/s with ``--workers`` workers (batch ``--batch``), cold (first pass:
medclip decodes and fills its cache) and warm (later passes; torchvision decodes again every epoch, the files in the
page cache; the same number of passes is timed for both), and medclip's cache size.

    python benchmarks/images.py              # 96 images 1024 x 1024 -> 224 x 224
    python benchmarks/images.py --quick      # 48 images 512 x 512 -> 112 x 112, a few seconds

Target (issue 16): medclip warm >= 3x torchvision's standard pipeline warm, with 2 workers.
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

import torch  # noqa: E402
from torch.utils.data import Dataset, default_collate  # noqa: E402

from medclip.data.loader import WORKER_KINDS, make_loader  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def write_radiographs(folder: Path, count: int, side: int) -> list[Path]:
    """``count`` 8-bit chest radiograph phantoms as PNG (the NIH ChestX-ray14 layout: 1024 x 1024 grayscale)."""
    from modalities.image.phantom import chest_radiograph, write_png

    paths = []
    for index in range(count):
        path = folder / f"cxr_{index:04d}.png"
        write_png(path, chest_radiograph(index, shape=(side, side)).display)
        paths.append(path)
    return paths


class TorchvisionImages(Dataset):
    """The standard torchvision v2 pipeline for a grayscale radiograph and an ImageNet-pretrained backbone."""

    def __init__(self, paths, size: int) -> None:
        from torchvision.transforms import v2

        self.paths = paths
        self.transform = v2.Compose(
            [
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Resize(size=None, max_size=size, antialias=True),
                v2.CenterCrop(size),  # pads the short side with zeros
                v2.Lambda(lambda image: image.expand(3, -1, -1)),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("L"))


class MedclipImages(Dataset):
    """The image plugin's load (cache-aware) + evaluation transform, as the training data set runs them."""

    def __init__(self, paths, plugin) -> None:
        self.paths = paths
        self.plugin = plugin
        self.transform = plugin.transforms(train=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.transform(self.plugin.load(self.paths[index]))


class MedclipCollate:
    """The plugin's own collate (what the trainer uses): the (B, 1, H, W) float16 batch."""

    def __init__(self, plugin) -> None:
        self.plugin = plugin

    def __call__(self, samples):
        return self.plugin.collate(samples)["image"]


def medclip_finish(encoder) -> callable:
    """The encoder's input step (repeat to RGB, normalise with the backbone's constants), applied per batch."""

    def finish(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return encoder.backbone_input(batch)  # (B, 3, H, W) float32

    return finish


def timed_passes(dataset, workers: int, kind: str, batch: int, warm_passes: int, collate, finish=None):
    """Images/s of the first (cold) pass and of ``warm_passes`` more passes together (warm), and the output shape.

    Workers are started before the clock starts, so every pipeline is timed on loading alone.
    """
    loader = make_loader(
        dataset, batch_size=batch, collate_fn=collate, num_workers=workers, worker_kind=kind, persistent_workers=True
    )
    shape = None
    iterator = iter(loader)
    rates = []
    for passes in (1, warm_passes):
        start = time.perf_counter()
        for _ in range(passes):
            for output in iterator:
                output = finish(output) if finish is not None else output
                shape = tuple(output.shape[1:])
            iterator = iter(loader)
        rates.append(passes * len(dataset) / (time.perf_counter() - start))
    return rates[0], rates[1], shape


def check_same_output(paths, size: int, work: Path) -> float:
    """Max |torchvision - medclip| over a few images (medclip through its cache); raises if they disagree."""
    import medclip

    plugin = medclip.get_modality("image", {"size": [size, size], "cache_dir": str(work / "check-cache")})
    encoder = plugin.build_encoder()
    finish = medclip_finish(encoder)
    reference = TorchvisionImages(paths[:4], size)
    ours = MedclipImages(paths[:4], plugin)
    difference = 0.0
    for index in range(4):
        for _ in range(2):  # the second load is the cache hit
            batch = finish(plugin.collate([ours[index]])["image"])
        difference = max(difference, float((batch[0] - reference[index]).abs().max()))
    bound = 2.0**-11 / min(IMAGENET_STD) + 1e-4  # float16 rounding of a [0, 1] intensity, after normalisation
    if difference > bound:
        raise SystemExit(f"outputs differ: max |difference| {difference:.5f} > {bound:.5f}")
    return difference


def run(paths, work: Path, kind: str, workers: int, batch: int, size: int, warm_passes: int) -> dict:
    import medclip

    results = {}
    torchvision = TorchvisionImages(paths, size)
    results[("torchvision standard", kind)] = (
        *timed_passes(torchvision, workers, kind, batch, 1, default_collate),
        None,
    )
    plugin = medclip.get_modality("image", {"size": [size, size], "cache_dir": str(work / "medclip-cache")})
    finish = medclip_finish(plugin.build_encoder())
    dataset = MedclipImages(paths, plugin)
    measured = timed_passes(dataset, workers, kind, batch, warm_passes, MedclipCollate(plugin), finish)
    results[("medclip cached", kind)] = (*measured, plugin.cache.size_bytes())
    return results


def report(results: dict, kinds: list[str], float32_bytes: int) -> None:
    header = f"{'pipeline':<24}{'workers':>9}{'cold img/s':>12}{'warm img/s':>12}{'cache MB':>10}{'x float32':>11}"
    print(f"\n{header}  output")
    for (name, kind), (cold, warm, shape, size) in results.items():
        cache = f"{size / 1e6:10.1f}{size / float32_bytes:11.2f}" if size is not None else f"{'-':>10}{'-':>11}"
        print(f"{name:<24}{kind:>9}{cold:12.1f}{warm:12.1f}{cache}  {shape}")
    standard = results[("torchvision standard", "process" if "process" in kinds else kinds[0])][1]
    for kind in kinds:
        ours_cold, ours_warm = results[("medclip cached", kind)][:2]
        peer_cold, peer_warm = results[("torchvision standard", kind)][:2]
        print(f"\ntargets, medclip with {kind} workers:")
        print(f"  warm vs torchvision warm, same loader ({kind} workers): {ours_warm / peer_warm:.2f}x (target >= 3)")
        print(f"  warm vs torchvision warm in its standard form (process workers): {ours_warm / standard:.2f}x")
        print(f"  first pass (decode + cache fill) vs torchvision first pass: {ours_cold / peer_cold:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="48 images 512 x 512 -> 112 x 112")
    parser.add_argument("--n", type=int, default=0, help="images (default 96, quick 48)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--worker-kind", default="both", choices=[*WORKER_KINDS, "both"])
    parser.add_argument("--warm-passes", type=int, default=3, help="warm passes timed together (both pipelines)")
    parser.add_argument("--dir", default="", help="working folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # what each DataLoader worker gets anyway; keeps the main process from competing

    side, size = (512, 112) if args.quick else (1024, 224)
    count = args.n or (48 if args.quick else 96)
    kinds = list(WORKER_KINDS) if args.worker_kind == "both" else [args.worker_kind]
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="medclip-bench-images-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(
            f"writing {count} chest radiograph PNGs {side} x {side} (8-bit) -> {size} x {size}, {args.workers} "
            f"workers ({', '.join(kinds)}), batch {args.batch}"
        )
        paths = write_radiographs(work, count, side)
        difference = check_same_output(paths, size, work)
        print(f"same output: max |torchvision - medclip| = {difference:.5f} (float16 storage of [0, 1] intensities)")
        results = {}
        for kind in kinds:
            results.update(run(paths, work / kind, kind, args.workers, args.batch, size, args.warm_passes))
        report(results, kinds, count * 3 * size * size * 4)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
