"""The quickstart end to end through the real CLI, with a reduced step count."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib.image


def test_quickstart_cli_end_to_end(tmp_path):
    out = tmp_path / "qs"
    command = [
        sys.executable,
        "-m",
        "medclip.cli",
        "quickstart",
        "--out",
        str(out),
        "pretrain.train.steps=60",
        "pretrain.train.progress=false",
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "zero-shot accuracy" in finished.stdout and "linear probe accuracy" in finished.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    chance = metrics["chance_accuracy_majority_class"]
    # Held-out zero-shot accuracy far above chance and within reach of the probe on the same embeddings.
    assert metrics["zero_shot_accuracy"] > chance + 0.2
    assert metrics["zero_shot_accuracy"] > metrics["probe_accuracy"] - 0.2
    assert metrics["cell_to_text_R@5"] >= metrics["cell_to_text_R@1"] > chance
    assert metrics["n_test_cells"] > 100 and metrics["n_cell_types"] == 10

    for name in ("confusion_matrix.png", "embedding_map.png", "training_curve.png"):
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0.01, name
    assert (out / "checkpoint" / "model.safetensors").is_file()
    log_lines = (out / "train_log.jsonl").read_text().splitlines()
    assert json.loads(log_lines[-1])["step"] == 60
    # The pseudonymised manifest never lets raw ids reach outputs: the manifest's cell ids are absent from the logs.
    assert "cell-0001" not in (out / "train_log.jsonl").read_text()
    assert "cell-0001" not in (out / "data_summary.json").read_text()
