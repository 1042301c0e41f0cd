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


def embed_split(checkpoint: str | Path, manifest: str | Path, split: str = "test", batch_size: int = 64):
    """Embed both modalities of a split's spots with a trained checkpoint -> (image (n, D), genes (n, D), sites)."""
    import medclip
    from medclip.embedding import LoaderOptions
    from medclip.embedding import embed_split as embed_rows
    from medclip.eval.evaluation_data import open_evaluation_data

    model = medclip.load_model(checkpoint)
    data = open_evaluation_data(model, manifest, [IMAGE, GENES])
    dataset = data.dataset(model, [IMAGE, GENES], split)
    rows, summary = embed_rows(model, dataset, [IMAGE, GENES], LoaderOptions(batch_size=batch_size, progress=False))
    both = rows.present[IMAGE] & rows.present[GENES]  # (n,) spots with both modalities
    if not both.any():
        raise ValueError(f"the {split!r} split has no spot with both a patch and expression")
    image = torch.from_numpy(rows.embeddings[IMAGE][both])  # (b, D)
    genes = torch.from_numpy(rows.embeddings[GENES][both])  # (b, D)
    sites = [site or "all" for site, keep in zip(rows.sites, both, strict=True) if keep]
    return image, genes, sites, summary.total() - dataset.summary.total()


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
