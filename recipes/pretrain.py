"""Pretraining on institutional data described by a manifest (``medclip pretrain --config X.yaml``).

Copy ``recipes/configs/pretrain_example.yaml`` (``medclip recipes copy pretrain my.yaml``), point ``data.manifest``
at your CSV/Parquet manifest, name the modalities and their options, and run. Outputs in ``out``: ``checkpoint/``
(load it with ``medclip.load_model``), ``train_log.jsonl``, ``tensorboard/``, ``metrics.json``,
``data_summary.json`` (rows skipped and why), ``training_curve.png``. Under ``torchrun`` it trains with DDP.
"""

from __future__ import annotations

import json
from pathlib import Path

from medclip.experiment import ExperimentConfig
from medclip.train import pretrain

COMMAND = "pretrain"
HELP = "contrastive pretraining on a manifest of institutional data (DDP under torchrun)"
DEFAULT_CONFIG = "pretrain_example.yaml"
Config = ExperimentConfig


def write_training_curve(out: Path) -> Path | None:
    """PNG of the loss per logged step, read back from ``train_log.jsonl``."""
    from medclip.eval.plots import plot_training_curve

    log_path = out / "train_log.jsonl"
    if not log_path.is_file():
        return None
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not records:
        return None
    return plot_training_curve([r["step"] for r in records], [r["loss"] for r in records], out / "training_curve.png")


def main(cfg: Config) -> dict[str, float]:
    result = pretrain(cfg)
    out = Path(cfg.out)
    metrics = {key: float(value) for key, value in result.metrics.items()}
    if (out / "checkpoint").exists():  # only the main process writes outputs
        (out / "metrics.json").write_text(json.dumps({"train": metrics, "data": result.summary}, indent=1))
        write_training_curve(out)
    return metrics
