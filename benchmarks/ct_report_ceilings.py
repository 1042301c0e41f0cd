"""Why does CT <-> report pretraining stay at chance on held-out patients? Each tower's ceiling, measured. (issue 13)

    python benchmarks/ct_report_ceilings.py                 # the 160-patient set of ct_report_learning.py (~10 min)
    python benchmarks/ct_report_ceilings.py --quick         # 16 patients, a few steps: a smoke run

Contrastive pretraining can only align what each tower can extract. This script trains each tower ALONE, with the
manifest's ``label:<finding>`` columns as direct supervision (binary cross-entropy, the same preprocessing, encoder,
optimiser and steps as pretraining), and scores the held-out (val + test) patients. A tower that cannot learn the
findings from labels cannot learn them from reports either, so its supervised AUROC bounds what pretraining can reach.
Beside the towers: a logistic regression on the HU-window histograms of the very tensors the encoder sees (does the
preprocessing keep the signal?) at the configured spacing and at the data's own 3 mm.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ct_report_data import FINDINGS, write_head_dataset  # noqa: E402
from ct_report_learning import BUNDLED, HEAD, logistic_auroc  # noqa: E402

NATIVE = ["modalities.ct.spacing=[3.0,3.0,3.0]", "modalities.ct.size=[64,80,64]"]  # the data's own voxel size
HISTOGRAM_EDGES = np.linspace(0.01, 0.99, 50)  # windowed values in (0, 1): saturated air and bone fall outside


@dataclass
class Tower:
    """One tower trained alone on the labels: which modality, config overrides, learning rate."""

    name: str
    modality: str
    overrides: list[str] = field(default_factory=list)
    lr: float = 3e-4


TOWERS = [
    Tower("report transformer (bundled)", "report"),
    Tower("CT ViT, head 6 mm", "ct", HEAD),
    Tower("CT ResNet, head 6 mm", "ct", [*HEAD, "modalities.ct.encoder=resnet", "modalities.ct.patch_size=[]"], 1e-3),
    Tower(
        "CT ResNet, head 3 mm",
        "ct",
        [*HEAD, *NATIVE, "modalities.ct.encoder=resnet", "modalities.ct.patch_size=[]"],
        1e-3,
    ),
]


def modality_config(overrides: list[str], manifest: Path, cache: Path) -> dict:
    """The bundled pretraining config with the head overrides and the benchmark's own preprocessing cache (the
    bundled one points into data/ct_phantom): modality name -> its settings."""
    from medclip.config import load
    from recipes.pretrain import Config

    cfg = load(Config, BUNDLED, [f"data.manifest={manifest}", f"modalities.ct.cache_dir={cache}", *overrides])
    return {name: dict(settings) for name, settings in cfg.modalities.items()}


def prepared(modality: str, settings: dict, manifest: Path, rows: list[dict], train: np.ndarray):
    """(plugin, evaluation-transformed samples) of every row; the report tokenizer is fitted on training rows."""
    from medclip.factory import build_modalities

    plugin = build_modalities({modality: settings})[modality]
    samples = [plugin.load(plugin.resolve(row[modality], manifest.parent)) for row in rows]
    if getattr(plugin, "fits_on_data", False):
        plugin.fit([samples[i] for i in np.flatnonzero(train)])
    transform = plugin.transforms(train=False)
    return plugin, [transform(sample) for sample in samples]


def supervised_auroc(plugin, samples, labels, train, held_out, steps, lr, seed=0) -> tuple[list[float], list[float]]:
    """Train the plugin's encoder + a linear head with BCE on the training rows; AUROC per finding on held-out and
    training rows (a fit to the training rows with held-out chance is memorisation)."""
    import torch

    from medclip.eval.metrics import auroc

    torch.manual_seed(seed)
    encoder = plugin.build_encoder()
    head = torch.nn.Linear(encoder.output_dim, labels.shape[1])
    parameters = [*encoder.parameters(), *head.parameters()]
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.1)
    targets = torch.tensor(labels, dtype=torch.float32)  # (N, K)
    generator = torch.Generator().manual_seed(seed)
    train_rows = np.flatnonzero(train)

    def logits(rows) -> torch.Tensor:
        batch = plugin.collate([samples[i] for i in rows])
        return head(encoder(batch[plugin.name]).pooled)  # (B, K)

    for _ in range(steps):
        chosen = train_rows[torch.randperm(len(train_rows), generator=generator)[:16].numpy()]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(chosen), targets[chosen])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    encoder.eval()
    with torch.no_grad():
        scores = {
            name: np.concatenate([logits(rows[i : i + 16]).numpy() for i in range(0, len(rows), 16)])
            for name, rows in (("held_out", np.flatnonzero(held_out)), ("train", train_rows))
        }
    return (
        [float(value) for value in auroc(labels[held_out], scores["held_out"])],
        [float(value) for value in auroc(labels[train], scores["train"])],
    )


def histogram_auroc(samples, labels, train, held_out) -> list[float]:
    """Logistic regression on each HU window's histogram of the preprocessed tensors: AUROC per finding."""
    features = np.stack(
        [
            np.concatenate([np.log1p(np.histogram(channel, bins=HISTOGRAM_EDGES)[0]) for channel in volume])
            for volume in (np.asarray(sample["ct"], dtype=np.float32) for sample in samples)
        ]
    )  # (N, channels * bins)
    return [float(value) for value in logistic_auroc(features, labels, train, held_out)]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 patients, 3 steps: a smoke run")
    parser.add_argument("--work", default="runs/ct_report_learning", help="the data of ct_report_learning.py")
    parser.add_argument("--patients", type=int, default=None, help="default 160 (quick: 16)")
    parser.add_argument("--steps", type=int, default=None, help="supervised steps per tower (default 300; quick: 3)")
    parser.add_argument("--towers", nargs="*", default=None, help="indices into TOWERS (default: all)")
    args = parser.parse_args(argv)
    patients = args.patients or (16 if args.quick else 160)
    steps = args.steps if args.steps is not None else (3 if args.quick else 300)
    towers = [TOWERS[int(i)] for i in args.towers] if args.towers else TOWERS
    data = Path(args.work) / f"data_{patients}"
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        write_head_dataset(data, n=patients)
    rows = list(csv.DictReader(manifest.open()))
    labels = np.array([[float(row[f"label:{finding}"]) for finding in FINDINGS] for row in rows])  # (N, K)
    train = np.array([row["split"] == "train" for row in rows])
    held_out = ~train
    results = []
    for tower in towers:
        started = time.perf_counter()
        settings = modality_config(tower.overrides, manifest, Path(args.work) / "cache")[tower.modality]
        plugin, samples = prepared(tower.modality, settings, manifest, rows, train)
        held, fitted = supervised_auroc(plugin, samples, labels, train, held_out, steps, tower.lr)
        result = {"tower": tower.name, "steps": steps, "held_out": held, "train": fitted}
        if tower.modality == "ct":
            result["histogram"] = histogram_auroc(samples, labels, train, held_out)
        result["minutes"] = (time.perf_counter() - started) / 60
        results.append(result)
        print(json.dumps(result), flush=True)
    text = table(results, int(held_out.sum()))
    print(f"\n{patients} patients, {int(train.sum())} train / {int(held_out.sum())} held out\n{text}")
    output = {"patients": patients, "results": results, "table": text}
    (Path(args.work) / "ceilings.json").write_text(json.dumps(output, indent=1))
    return output


def table(results: list[dict], held_out: int) -> str:
    names = " / ".join(FINDINGS)
    lines = [
        f"| tower trained alone on the labels | steps | held-out AUROC ({names}) | macro | train macro | "
        f"histogram of its input, held-out AUROC ({names}) | minutes |",
        "|---" * 7 + "|",
    ]
    for result in results:
        histogram = result.get("histogram")
        lines.append(
            f"| {result['tower']} | {result['steps']} | "
            + " / ".join(f"{value:.2f}" for value in result["held_out"])
            + f" | {np.nanmean(result['held_out']):.2f} | {np.nanmean(result['train']):.2f} | "
            + (" / ".join(f"{value:.2f}" for value in histogram) if histogram else "-")
            + f" | {result['minutes']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
