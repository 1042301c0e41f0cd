"""Spatial transcriptomics: spots paired with the right patch, per-sample Recall@K, and a short pretraining run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from modalities.wsi import WSIConfig, WSIModality
from modalities.wsi.spatial import spot_centres, write_spatial_manifest
from modalities.wsi.spatial_eval import recall_by_sample
from modalities.wsi.synthetic import write_slide


def colour_of(index: int) -> tuple[int, int, int]:
    """A distinct colour per spot, far apart in every channel so JPEG cannot confuse two spots."""
    return (40 + 60 * (index % 4), 40 + 60 * ((index // 4) % 4), 40 + 60 * ((index // 16) % 4))


def test_each_spot_is_paired_with_the_patch_under_it(tmp_path):
    import anndata

    spacing, size = 128, 768  # spot centres every 128 level-0 px; each spot sits in its own colour block
    centres = [(x, y) for y in range(64, size, spacing) for x in range(64, size, spacing)]
    image = np.zeros((size, size, 3), dtype=np.uint8)
    for index, (x, y) in enumerate(centres):
        image[y - 64 : y + 64, x - 64 : x + 64] = colour_of(index)
    slide = write_slide(tmp_path / "slides" / "section.tiff", image, mpp=0.5, levels=2, tile=128, quality=95)
    order = np.random.default_rng(0).permutation(len(centres))  # spots stored in shuffled order
    counts = np.zeros((len(centres), 5), np.float32)
    counts[np.arange(len(centres)), order % 5] = order + 1  # the spot's identity is in its expression too
    adata = anndata.AnnData(X=counts, var=pd.DataFrame(index=[f"G{i}" for i in range(5)]))
    adata.obsm["spatial"] = np.asarray(centres, dtype=np.float64)[order] / 2  # stored at half resolution
    adata.write_h5ad(tmp_path / "section.h5ad")

    manifest = write_spatial_manifest(
        [(tmp_path / "section.h5ad", slide)], tmp_path / "manifest.csv", mpp=1.0, size=32, scale=2.0
    )
    np.testing.assert_allclose(spot_centres(tmp_path / "section.h5ad", scale=2.0), np.asarray(centres)[order])
    table = pd.read_csv(manifest)
    assert len(table) == len(centres) and set(table["site"]) == {"sample0"}
    assert table["wsi"][0].startswith("slides/section.tiff#mpp=1")  # relative to the manifest

    plugin = WSIModality(WSIConfig(patch_size=32, mpp=1.0))
    from modalities.expression import ExpressionModality

    expression = ExpressionModality()
    for row, (wsi_cell, expression_cell) in enumerate(zip(table["wsi"], table["expression"], strict=True)):
        patch = plugin.load(plugin.resolve(wsi_cell, tmp_path))
        assert patch["wsi"].shape == (1, 32, 32, 3) and patch["wsi_meta"]["level"] == 1
        centre_colour = patch["wsi"][0, 8:24, 8:24].reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(centre_colour, colour_of(int(order[row])), atol=4)  # the right spot's block
        x, y = patch["wsi_coords"][0]
        assert (x + 32, y + 32) == tuple(np.asarray(centres[order[row]]))  # 32 px at 1 MPP = 64 level-0 px
        values = expression.load(expression.resolve(expression_cell, tmp_path))["expression"]
        assert int(np.argmax(values)) == order[row] % 5  # the same spot's expression


def test_recall_by_sample_reports_both_directions_per_sample():
    torch.manual_seed(0)
    genes = torch.randn(30, 8)
    image = genes + 0.01 * torch.randn(30, 8)  # a near-perfect model
    samples = ["a"] * 10 + ["b"] * 20
    result = recall_by_sample(image, genes, samples, ks=(1, 5))
    assert result["all"]["image_to_gene/R@1"] == 1.0 and result["all"]["gene_to_image/R@1"] == 1.0
    assert set(result["per_sample"]) == {"a", "b"}
    assert result["per_sample"]["a"]["n"] == 10 and result["per_sample"]["a"]["chance/R@5"] == 0.5
    shuffled = recall_by_sample(image, genes[torch.randperm(30)], samples, ks=(1,))
    assert shuffled["all"]["image_to_gene/R@1"] < 0.5
    assert result["mean_over_samples"]["image_to_gene/R@1"] == 1.0


def test_histology_expression_pretraining_runs_and_evaluates(tmp_path):
    from medclip import config
    from modalities.wsi.spatial_eval import evaluate
    from modalities.wsi.synthetic import write_spatial_dataset
    from recipes import __file__ as recipes_init
    from recipes.pretrain import Config as PretrainConfig
    from recipes.pretrain import pretrain

    manifest = write_spatial_dataset(
        tmp_path / "data", samples=3, size=1024, patch_size=32, splits=("train", "test", "test")
    )
    shipped = config.read_yaml(f"{recipes_init.rsplit('/', 1)[0]}/configs/spatial_pretrain.yaml")
    overrides = [
        f"data.manifest={manifest}",
        f"out={tmp_path / 'run'}",
        "modalities.wsi.patch_encoder=test_resnet",
        "modalities.wsi.patch_size=32",
        "modalities.wsi.width=32",
        "modalities.expression.width=32",
        "model.embed_dim=16",
        "train.steps=4",
        "train.batch_size=8",
        "train.warmup_steps=1",
        "train.log_every=1",
        "train.progress=false",
    ]
    experiment = config.build(PretrainConfig, config.apply_overrides(shipped, overrides))
    result = pretrain(experiment)
    assert math.isfinite(result.metrics["loss"]) and (result.checkpoint / "model.safetensors").is_file()

    metrics = evaluate(result.checkpoint, manifest, split="test", ks=(1, 5))
    assert set(metrics["per_sample"]) == {"sample1", "sample2"} and metrics["skipped_rows"] == 0
    for direction in ("image_to_gene", "gene_to_image"):
        assert 0.0 <= metrics["all"][f"{direction}/R@5"] <= 1.0
        assert metrics["all"][f"{direction}/R@1"] <= metrics["all"][f"{direction}/R@5"]
