"""A real trained model and its training rows (the tiny checkpoint on pbmc68k_reduced), for refresh tests; a plain
module so the spawned distributed workers can import it too."""

from __future__ import annotations

from pathlib import Path

import medclip
from medclip.eval.evaluation_data import open_evaluation_data

MODALITIES = ["expression", "report"]


def model_and_training_rows(checkpoint: Path, manifest: Path):
    """(model in train mode, the training split as a ManifestDataset, the fitted plugins by name)."""
    model = medclip.load_model(checkpoint)
    model.train()
    data = open_evaluation_data(model, manifest, MODALITIES)
    dataset = data.dataset(model, MODALITIES, "train")
    return model, dataset, dict(dataset.modalities)
