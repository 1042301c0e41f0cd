"""Image -> gene and gene -> image Recall@K for spot-level histology <-> expression models, overall and per sample.

As HESCAPE reports it: each spot's patch embedding is a query over the expression embeddings (and vice versa); the
positive is the same spot. Per sample (the manifest's ``site``: a slide / Visium sample / batch), retrieval runs among
that sample's spots only, which shows whether the model matches spots *within* a tissue rather than only telling
samples (batches, stains) apart. Chance level (K / n) is reported next to every number.

Command line: ``python -m modalities.wsi.spatial_eval --checkpoint RUN/checkpoint --manifest manifest.csv``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclip.eval.retrieval import recall_at_k

IMAGE, GENES = "wsi", "expression"


def paired_recall(image: torch.Tensor, genes: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K both ways for paired (n, D) embeddings, plus chance level K / n."""
    ks = [k for k in ks if k >= 1]
    metrics = {f"image_to_gene/{key}": value for key, value in recall_at_k(image, genes, ks).items()}
    metrics.update({f"gene_to_image/{key}": value for key, value in recall_at_k(genes, image, ks).items()})
    metrics.update({f"chance/R@{k}": min(1.0, k / len(image)) for k in ks})
    metrics["n"] = float(len(image))
    return metrics


def recall_by_sample(
    image: torch.Tensor, genes: torch.Tensor, samples: Sequence[str], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, Any]:
    """Recall@K over all spots and among each sample's spots.

    Returns:
        ``{"all": metrics, "per_sample": {sample: metrics}, "mean_over_samples": metrics averaged over samples}``.
    """
    if len(samples) != len(image) or len(genes) != len(image):
        raise ValueError(f"{len(image)} image and {len(genes)} gene embeddings for {len(samples)} sample names")
    names = np.asarray([str(sample) for sample in samples])
    per_sample = {}
    for name in sorted(set(names.tolist())):
        rows = torch.from_numpy(np.nonzero(names == name)[0])
        per_sample[name] = paired_recall(image[rows], genes[rows], ks)
    keys = next(iter(per_sample.values())).keys() if per_sample else []
    mean = {key: float(np.mean([metrics[key] for metrics in per_sample.values()])) for key in keys if key != "n"}
    return {"all": paired_recall(image, genes, ks), "per_sample": per_sample, "mean_over_samples": mean}


@torch.no_grad()
def embed_split(checkpoint: str | Path, manifest: str | Path, split: str = "test", batch_size: int = 64):
    """Embed both modalities of a split's spots with a trained checkpoint -> (image (n, D), genes (n, D), sites)."""
    import medclip
    from medclip.data import ManifestDataset, assign_splits, collate_samples, read_manifest
    from medclip.train.checkpoint import read_config

    model, preprocess = medclip.load_model(checkpoint)
    model.eval()
    saved = read_config(checkpoint)
    table = read_manifest(manifest, [IMAGE, GENES], root=saved.data.root or None)
    splits = assign_splits(table, saved.data.val_fraction, saved.data.test_fraction, saved.data.split_seed)
    modalities = {name: preprocess.modalities[name] for name in (IMAGE, GENES)}
    dataset = ManifestDataset(
        table, modalities, split=split, transforms={n: preprocess.transforms[n] for n in modalities}, splits=splits
    )
    site_of = {row.row_number: row.site or "all" for row in dataset.rows()}
    image, genes, sites, skipped = [], [], [], 0
    for start in range(0, len(dataset), batch_size):
        batch = collate_samples([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))], modalities)
        skipped += len(batch["skipped"])
        if not batch["batch_size"]:
            continue
        both = batch[f"{IMAGE}_mask"] & batch[f"{GENES}_mask"]  # (B,) spots with both modalities
        rows = torch.nonzero(both).flatten()
        image.append(model.encode(IMAGE, medclip.model.select_rows(batch[IMAGE], rows)))  # (b, D)
        genes.append(model.encode(GENES, medclip.model.select_rows(batch[GENES], rows)))  # (b, D)
        sites.extend(site_of[batch["row"][i]] for i in rows.tolist())
    if not image:
        raise ValueError(f"the {split!r} split has no spot with both a patch and expression")
    return torch.cat(image), torch.cat(genes), sites, skipped


def evaluate(
    checkpoint: str | Path, manifest: str | Path, split: str = "test", ks: Sequence[int] = (1, 5, 10)
) -> dict[str, Any]:
    """Recall@K overall and per sample on ``split``; ``skipped_rows`` counts spots that failed to load."""
    image, genes, sites, skipped = embed_split(checkpoint, manifest, split)
    result = recall_by_sample(image, genes, sites, ks)
    result["split"] = split
    result["skipped_rows"] = skipped
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modalities.wsi.spatial_eval", description="Image<->gene Recall@K overall and per sample."
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--out", help="write the metrics JSON here (default: next to the checkpoint)")
    args = parser.parse_args(argv)
    result = evaluate(args.checkpoint, args.manifest, args.split, args.k)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"spatial_eval_{args.split}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
