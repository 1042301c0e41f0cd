"""Quickstart: align single-cell expression with text on real data, then classify held-out cells zero-shot.

Data: scanpy's bundled ``pbmc68k_reduced`` (700 real peripheral-blood cells x 765 genes, annotated cell types).
Each cell is paired with a short text describing its annotated type in one of several phrasings. After contrastive
pretraining (expression encoder <-> text encoder), held-out cells are classified by their nearest cell-type prompt
embedding (zero-shot: no classifier is trained), next to a logistic-regression probe on the same frozen embeddings.

All 700 cells come from one donor, so the cell (not the patient) is the unit of the split here; the manifest gives
each cell its own ``patient_id`` to say so. The prompts reuse the phrasings the text encoder was trained on: with a
tokenizer trained from scratch on these texts there are no other words it knows.

Outputs in ``out``: ``metrics.json``, ``confusion_matrix.png``, ``embedding_map.png``, ``training_curve.png``,
``checkpoint/`` (``medclip.load_model``), ``data/`` (the h5ad file and the manifest it trained from).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import medclip
from medclip.embedding import embed
from recipes.pretrain import Config as PretrainConfig
from recipes.pretrain import pretrain, write_training_curve

COMMAND = "quickstart"
HELP = "expression <-> text on scanpy's bundled pbmc68k_reduced: zero-shot cell typing on CPU in minutes"
DEFAULT_CONFIG = "quickstart.yaml"
PRINTS_OWN_SUMMARY = True

# How clinicians and biologists name each annotated population (pbmc68k_reduced's `bulk_labels`).
CELL_TYPE_NAMES: dict[str, list[str]] = {
    "CD14+ Monocyte": ["CD14+ monocyte", "classical monocyte"],
    "Dendritic": ["dendritic cell", "antigen presenting dendritic cell"],
    "CD19+ B": ["CD19+ B cell", "B lymphocyte"],
    "CD4+/CD25 T Reg": ["regulatory T cell", "CD4+ CD25+ T reg"],
    "CD8+ Cytotoxic T": ["CD8+ cytotoxic T cell", "cytotoxic T lymphocyte"],
    "CD8+/CD45RA+ Naive Cytotoxic": ["naive CD8+ T cell", "CD45RA+ naive cytotoxic T cell"],
    "CD56+ NK": ["natural killer cell", "CD56+ NK cell"],
    "CD4+/CD45RO+ Memory": ["memory CD4+ T cell", "CD45RO+ memory T cell"],
    "CD34+": ["CD34+ progenitor cell", "hematopoietic progenitor cell"],
    "CD4+/CD45RA+/CD25- Naive T": ["naive CD4+ T cell", "CD45RA+ naive helper T cell"],
}
TEMPLATES = [
    "a {}.",
    "single cell transcriptome of a {}.",
    "peripheral blood {} profiled by single cell RNA sequencing.",
    "this cell is a {}.",
]


def default_pretrain() -> PretrainConfig:
    return PretrainConfig()


@dataclass
class Config:
    out: str = "quickstart_out"
    cell_type_column: str = "bulk_labels"  # obs column holding the annotated cell type
    seed: int = 0  # seeds the pairing of cells with phrasings (training has its own train.seed)
    eval_batch_size: int = 128
    pretrain: PretrainConfig = field(default_factory=default_pretrain)


def phrasings(cell_type: str) -> list[str]:
    """Every description of one cell type: names x templates."""
    names = CELL_TYPE_NAMES.get(cell_type, [cell_type])
    return [template.format(name) for name in names for template in TEMPLATES]


def write_dataset(cfg: Config, data_dir: Path) -> tuple[Path, pd.DataFrame, list[str]]:
    """Write pbmc68k_reduced as .h5ad plus a manifest pairing each cell with one description of its type."""
    import scanpy as sc

    data_dir.mkdir(parents=True, exist_ok=True)
    adata = sc.datasets.pbmc68k_reduced()
    if cfg.cell_type_column not in adata.obs:
        raise ValueError(f"pbmc68k_reduced has no obs column {cfg.cell_type_column!r}")
    h5ad_name = "pbmc68k_reduced.h5ad"
    adata.write_h5ad(data_dir / h5ad_name)
    cell_types = adata.obs[cfg.cell_type_column].astype(str).to_numpy()
    classes = sorted(set(cell_types))
    rng = random.Random(cfg.seed)
    table = pd.DataFrame(
        {
            "patient_id": [f"cell-{index:04d}" for index in range(adata.n_obs)],  # one donor: the cell is the unit
            "expression": [f"{h5ad_name}#row={index}" for index in range(adata.n_obs)],
            "report": [rng.choice(phrasings(cell_type)) for cell_type in cell_types],
        }
    )
    for name in classes:
        table[f"label:{name}"] = (cell_types == name).astype(int)
    manifest_path = data_dir / "manifest.csv"
    table.to_csv(manifest_path, index=False)
    return manifest_path, table, classes


def evaluate(cfg: Config, checkpoint: Path, table: pd.DataFrame, classes: list[str], splits, data_dir: Path) -> dict:
    """Reload the checkpoint, embed held-out cells and prompts, and compute zero-shot, probe and retrieval metrics."""
    from medclip.eval import (
        class_embeddings,
        confusion,
        linear_probe,
        macro_f1,
        plot_confusion,
        plot_embedding_map,
        recall_at_k,
        zero_shot_scores,
    )

    model = medclip.load_model(checkpoint)
    expression = model.preprocess.modalities["expression"]
    label_matrix = table[[f"label:{name}" for name in classes]].to_numpy()
    cell_class = label_matrix.argmax(axis=1)  # (N,)

    def embed_cells(rows: list[int]) -> torch.Tensor:
        refs = [expression.resolve(table.loc[row, "expression"], data_dir) for row in rows]
        return embed(model, "expression", refs, batch_size=cfg.eval_batch_size)  # (n, D)

    # Manifest row numbers are 1-based (row 1 = the first line after the header); the table is 0-based.
    train_rows = [number - 1 for number in splits["train"]]
    test_rows = [number - 1 for number in splits["test"]]
    train_cells, test_cells = embed_cells(train_rows), embed_cells(test_rows)
    train_y, test_y = cell_class[train_rows], cell_class[test_rows]

    prompts = [phrasings(name) for name in classes]
    flat_prompts = [text for group in prompts for text in group]
    prompt_embeddings = embed(model, "report", flat_prompts, batch_size=cfg.eval_batch_size)  # (C*P, D)
    per_class = list(torch.split(prompt_embeddings, [len(group) for group in prompts]))
    class_emb = class_embeddings(per_class)  # (C, D)
    scores = zero_shot_scores(test_cells, class_emb)  # (n_test, C)
    zero_shot_pred = scores.argmax(dim=1).numpy()

    probe = linear_probe(train_cells.numpy(), train_y, test_cells.numpy(), test_y, seed=cfg.seed)
    prompt_class = np.repeat(np.arange(len(classes)), [len(group) for group in prompts])
    positives = torch.from_numpy(test_y[:, None] == prompt_class[None, :])  # (n_test, C*P): same cell type
    retrieval = recall_at_k(test_cells, prompt_embeddings, ks=(1, 5), positives=positives)

    labels = list(range(len(classes)))
    metrics = {
        "zero_shot_accuracy": float((zero_shot_pred == test_y).mean()),
        "zero_shot_macro_f1": float(macro_f1(test_y, zero_shot_pred, labels=labels)),
        "probe_accuracy": float(probe["accuracy"]),
        "probe_macro_f1": float(probe["macro_f1"]),
        "cell_to_text_R@1": float(retrieval["R@1"]),
        "cell_to_text_R@5": float(retrieval["R@5"]),
        "chance_accuracy_majority_class": float(np.bincount(test_y, minlength=len(classes)).max() / len(test_y)),
        "n_train_cells": len(train_rows),
        "n_test_cells": len(test_rows),
        "n_cell_types": len(classes),
    }
    out = Path(cfg.out)
    plot_confusion(
        confusion(test_y, zero_shot_pred, len(classes)),
        classes,
        out / "confusion_matrix.png",
        title="Zero-shot cell typing on held-out cells (rows: annotated type)",
    )
    both = torch.cat([test_cells, class_emb]).numpy()
    both_labels = np.concatenate([test_y, np.arange(len(classes))])
    markers = np.array(["cell"] * len(test_y) + ["text prompt"] * len(classes))
    plot_embedding_map(
        both,
        both_labels,
        classes,
        out / "embedding_map.png",
        title="Joint embedding: held-out cells and cell-type prompts",
        modality_marker=markers,
    )
    return metrics


def render_table(metrics: dict, seconds: float) -> str:
    rows = [
        ("zero-shot accuracy", metrics["zero_shot_accuracy"]),
        ("zero-shot macro-F1", metrics["zero_shot_macro_f1"]),
        ("linear probe accuracy", metrics["probe_accuracy"]),
        ("linear probe macro-F1", metrics["probe_macro_f1"]),
        ("cell -> text R@1 (same type)", metrics["cell_to_text_R@1"]),
        ("cell -> text R@5 (same type)", metrics["cell_to_text_R@5"]),
        ("chance (majority class)", metrics["chance_accuracy_majority_class"]),
    ]
    lines = [
        f"medclip quickstart: pbmc68k_reduced, {metrics['n_cell_types']} cell types, "
        f"{metrics['n_train_cells']} training / {metrics['n_test_cells']} held-out cells, {seconds:.0f} s",
        f"{'metric':<32}{'value':>8}",
        "-" * 40,
    ]
    lines += [f"{name:<32}{value:>8.3f}" for name, value in rows]
    return "\n".join(lines)


def main(cfg: Config) -> dict[str, float]:

    start = time.perf_counter()
    out = Path(cfg.out)
    data_dir = out / "data"
    manifest_path, table, classes = write_dataset(cfg, data_dir)
    experiment = cfg.pretrain
    experiment.out = str(out)
    experiment.data.manifest = str(manifest_path)
    result = pretrain(experiment)
    metrics = evaluate(cfg, result.checkpoint, table, classes, result.splits, data_dir)
    metrics["final_train_loss"] = float(result.metrics.get("loss", float("nan")))
    write_training_curve(out)
    seconds = time.perf_counter() - start
    metrics["seconds"] = seconds
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(render_table(metrics, seconds))
    print(
        f"\noutputs in {out}/: metrics.json, confusion_matrix.png, embedding_map.png, training_curve.png, checkpoint/"
    )
    return metrics
