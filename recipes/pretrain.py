"""Pretraining on institutional data described by a manifest (``medclip pretrain --config X.yaml``).

Copy ``recipes/configs/pretrain_example.yaml`` (``medclip recipes copy pretrain my.yaml``), point ``data.manifest``
at your CSV/Parquet manifest, name the modalities and their options, and run. Outputs in ``out``: ``checkpoint/``
(load it with ``medclip.load_model``), ``train_log.jsonl``, ``tensorboard/``, ``metrics.json``,
``data_summary.json`` (rows skipped and why), ``training_curve.png``. Under ``torchrun`` it trains with DDP.

The recipe composes library pieces: the manifest and its patient split (``medclip.data``), the model from its
description (``medclip.factory``), the loss registry (``medclip.losses``) and the training loop (``medclip.train``).
A new run's encoders can start from weights (each modality's ``weights:``, and ``train.init_from``: a medclip
checkpoint's towers; ``medclip.weights``, docs/warm_start.md); a resumed run continues from its own checkpoint.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclip.checkpoint import ModelCard, read_card, restore_modalities
from medclip.config import ConfigError
from medclip.data import SplitConfig, check_skip_fraction, collate_samples, read_manifest
from medclip.data.loader import WORKER_KINDS
from medclip.data.prepare import data_provenance, evaluation_transforms, prepare_datasets
from medclip.eval.validation import Validator
from medclip.factory import ModelConfig, build_modalities, build_model, tune_model
from medclip.losses import build_loss
from medclip.train import TrainConfig, Trainer
from medclip.train.launch import Runtime, setup_runtime, teardown_runtime
from medclip.train.resilience import resolve_resume
from medclip.types import Modality
from medclip.weights.init_from import (
    InitSource,
    init_from_checkpoint,
    open_init_source,
    restore_learned_preprocessing,
)
from medclip.weights.warm_start import check_no_overlap, weights_sources

COMMAND = "pretrain"
HELP = "contrastive pretraining on a manifest of institutional data (DDP under torchrun)"
DEFAULT_CONFIG = "pretrain_example.yaml"

log = logging.getLogger("medclip.pretrain")


@dataclass
class DataConfig(SplitConfig):
    manifest: str = ""  # CSV or Parquet, one row per study (see README "Manifest format")
    root: str = ""  # relative paths in the manifest are resolved against this (default: the manifest's folder)
    num_workers: int = 0  # loader workers; 0 loads in the main process
    # process | thread. Threads suit cached / memory-mapped inputs (CT/OCT/ECG caches), whose reads and array work
    # release the GIL: no per-sample copy between processes (several times faster warm). Processes suit CPU-heavy
    # Python decoding (uncached DICOM, tokenising). With threads, random transforms that use the per-sample
    # generator (CT/OCT augmentation) are reproducible; others draw from the global RNG shared with the training
    # step, so they (and dropout) are not reproducible run to run. See docs/ct.md "Loader workers".
    worker_kind: str = "process"
    max_skip_fraction: float = 0.5  # abort when more than this fraction of rows is unusable: the manifest is wrong
    confine_paths: bool = False  # refuse cells whose path leaves the manifest's folder (shared manifests)
    normalize_patient_ids: bool = False  # one patient for ids that differ only by letter case or spacing
    min_val_patients: int = 20  # val_fraction is raised (up to 0.3) to reach this; fewer makes validation noise

    def __post_init__(self) -> None:
        if self.worker_kind not in WORKER_KINDS:
            raise ConfigError(f"data.worker_kind must be one of {', '.join(WORKER_KINDS)}, got {self.worker_kind!r}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class Config:
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> that modality's options
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: dict[str, Any] = field(default_factory=lambda: {"clip": 1.0})  # name -> weight, or name -> {weight, ...}
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/medclip"


@dataclass
class PretrainResult:
    """What a pretraining run produced (paths, final training values, the data summary)."""

    checkpoint: Path
    metrics: dict[str, float]
    summary: dict[str, Any]
    splits: dict[str, list[int]] = field(default_factory=dict)  # split -> manifest row numbers
    validation: dict[str, float] = field(default_factory=dict)  # the last validation's metrics
    best: dict[str, Any] = field(default_factory=dict)  # {"metric", "value", "step"} of the best/ checkpoint
    stopped_early: bool = False


def model_card(cfg: Config) -> ModelCard:
    """The model card a run's checkpoints carry: the model description and how it was trained (no paths)."""
    training = {
        "recipe": COMMAND,
        "loss": cfg.loss,
        "split": {"val_fraction": cfg.data.val_fraction, "test_fraction": cfg.data.test_fraction,
                  "split_seed": cfg.data.split_seed},
        "normalize_patient_ids": cfg.data.normalize_patient_ids,  # evaluation must pseudonymise ids the same way
        "steps": cfg.train.steps,
        "batch_size": cfg.train.batch_size,
        "seed": cfg.train.seed,
    }  # fmt: skip
    return ModelCard(modalities=cfg.modalities, model=cfg.model, training=training)


def open_warm_starts(train: TrainConfig, modalities: dict[str, Modality]) -> tuple[InitSource | None, list[str]]:
    """Check a new run's warm starts before any data is read: every ``weights:`` file, and ``train.init_from``.

    Returns:
        The opened init_from checkpoint (None without one), and the towers whose learned preprocessing (tokenizer,
        gene vocabulary) it restored, which must not be fitted again.
    """
    weights_sources(modalities)  # missing, pickle-based or unreadable files are refused now, by option name
    if not train.init_from:
        if train.init_modalities:
            raise ConfigError("train.init_modalities picks towers of train.init_from, which is empty")
        return None, []
    source = open_init_source(train.init_from, list(modalities), train.init_modalities)
    check_no_overlap(modalities, source.towers)
    return source, restore_learned_preprocessing(source, modalities)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pretrain(cfg: Config, runtime: Runtime | None = None) -> PretrainResult:
    """Run one pretraining job; returns where the checkpoint is and the final training values.

    Args:
        cfg: the pretraining config.
        runtime: process layout; by default read from the torchrun environment (single process otherwise).
    """
    if not cfg.data.manifest:
        raise ValueError("data.manifest is empty: point it at a CSV or Parquet manifest (see README 'Manifest format')")
    resume = resolve_resume(cfg.train.resume, cfg.out)
    own_runtime = runtime is None
    runtime = runtime or setup_runtime(cfg.train.device)
    try:
        seed_everything(cfg.train.seed + runtime.rank)
        card = model_card(cfg)
        init_source = None
        if resume is not None:
            saved = read_card(resume)
            if saved.modalities != cfg.modalities or saved.training.get("loss") != cfg.loss:
                raise ValueError("train.resume: the checkpoint's modality or loss settings differ from this config's")
            modalities = restore_modalities(resume, saved)
            fit: bool | set[str] = False
            for key in ("warm_start", "init_from"):  # what the run started from stays on its later checkpoints
                if key in saved.training:
                    card.training[key] = saved.training[key]
        else:
            modalities = build_modalities(cfg.modalities)
            init_source, restored = open_warm_starts(cfg.train, modalities)  # before reading data: fail fast
            fit = set(modalities) - set(restored)
        manifest = read_manifest(
            cfg.data.manifest,
            list(modalities),
            root=cfg.data.root or None,
            normalize_patient_ids=cfg.data.normalize_patient_ids,
        )
        split_config, note = cfg.data.with_validation_patients(manifest, cfg.data.min_val_patients)
        if note:
            log.warning(note)
        card.training["split"] = {
            "val_fraction": split_config.val_fraction,
            "test_fraction": split_config.test_fraction,
            "split_seed": split_config.split_seed,
        }  # the fractions actually used: evaluation must find the same held-out patients
        splits = split_config.assign(manifest)
        datasets, summary = prepare_datasets(manifest, modalities, splits, fit, cfg.data.confine_paths)
        check_skip_fraction(summary, manifest.total_rows, cfg.data.max_skip_fraction)
        model = build_model(cfg.model, modalities, apply_weights=resume is None, tune=False)
        if model.warm_start:
            card.training["warm_start"] = model.warm_start
        if init_source is not None:
            card.training["init_from"] = init_from_checkpoint(
                model, init_source, heads=cfg.train.init_heads, logit_scale=cfg.train.init_logit_scale
            )
        tune_model(model, modalities)  # freeze / lora act on the weights the run starts from
        trainer = Trainer(
            card,
            modalities,
            model,
            build_loss(cfg.loss),
            datasets["train"],
            collate=partial(collate_samples, modalities=modalities),
            runtime=runtime,
            out_dir=Path(cfg.out),
            train_config=cfg.train,
            num_workers=cfg.data.num_workers,
            worker_kind=cfg.data.worker_kind,
            summary=summary,
            max_skip_fraction=cfg.data.max_skip_fraction,
            total_rows=manifest.total_rows,
            provenance=data_provenance(manifest, datasets),
            make_validator=validation_for(cfg, datasets, modalities, runtime),
        )
        if resume is not None:
            trainer.resume(resume)
        metrics = trainer.fit()
        if runtime.is_main:
            (Path(cfg.out) / "data_summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
            if summary.total():
                print(summary.render())
        split_rows = {name: dataset.row_numbers() for name, dataset in datasets.items()}
        return PretrainResult(
            trainer.checkpoint_dir,
            metrics,
            summary.to_dict(),
            split_rows,
            trainer.validation,
            trainer.best,
            trainer.stopped_early,
        )
    finally:
        if own_runtime:
            teardown_runtime(runtime)


def validation_for(cfg: Config, datasets: dict, modalities: dict, runtime: Runtime):
    """The validator factory the trainer calls with its (wrapped) model; None without validation rows."""
    if len(datasets["val"]) == 0:
        log.warning("no validation rows: nothing will show whether the model generalises to new patients")
        return None
    train_as_evaluated = datasets["train"].with_transforms(evaluation_transforms(modalities))
    collate = partial(collate_samples, modalities=modalities)

    def make(model, criterion, extra_loss_inputs=None) -> Validator:
        return Validator(
            model, criterion, datasets["val"], train_as_evaluated, collate, cfg.train.batch_size, runtime,
            cfg.train.precision, cfg.data.num_workers, cfg.data.worker_kind, cfg.train.seed, extra_loss_inputs,
            label_names=datasets["val"].manifest.label_names,
        )  # fmt: skip

    return make


def write_training_curve(out: Path) -> Path | None:
    """PNG of the training loss (raw and smoothed) and the validation retrieval, from ``train_log.jsonl``."""
    from medclip.eval.training_curve import plot_training_and_validation

    log_path = out / "train_log.jsonl"
    if not log_path.is_file():
        return None
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not records:
        return None
    return plot_training_and_validation(records, out / "training_curve.png")


def memorisation_note(validation: dict[str, float]) -> str | None:
    """One line comparing retrieval on training and validation patients (None without validation)."""
    train, val = validation.get("train/mean_R@1"), validation.get("val/mean_R@1")
    chances = [value for key, value in validation.items() if key.startswith("val/") and key.endswith("/chance/R@1")]
    if train is None or val is None or not chances:
        return None
    chance = float(np.mean(chances))
    note = f"retrieval R@1: training patients {train:.3f}, validation patients {val:.3f} (chance {chance:.3f})"
    if val < 2 * chance and train > 4 * chance:
        note += ": the model recognises its training studies but not new patients (memorisation)"
    elif val < 2 * chance:
        note += ": near chance on new patients"
    probes = probe_note(validation)
    return f"{note}; {probes}" if probes else note


PROBE_NEAR_CHANCE = 0.6  # a label probe's held-out macro AUROC below this: the tower carries little that transfers


def probe_note(validation: dict[str, float]) -> str | None:
    """The label probes' held-out macro AUROC per tower, naming the towers near chance (None without probes)."""
    from medclip.eval.validation_probe import macro_aurocs

    towers = macro_aurocs(validation)
    if not towers:
        return None
    note = "label probes on validation patients (macro AUROC): " + ", ".join(
        f"{tower} {value:.2f}" for tower, value in sorted(towers.items())
    )
    weak = sorted(tower for tower, value in towers.items() if value < PROBE_NEAR_CHANCE)
    if weak:
        note += f" ({', '.join(weak)} near chance: that tower has learnt little about the findings that transfers)"
    return note


def main(cfg: Config) -> dict[str, float]:
    result = pretrain(cfg)
    out = Path(cfg.out)
    metrics = {key: float(value) for key, value in result.metrics.items()}
    if (out / "checkpoint").exists():  # only the main process writes outputs
        summary = {
            "train": metrics,
            "validation": result.validation,
            "best": result.best,
            "stopped_early": result.stopped_early,
            "memorisation": memorisation_note(result.validation),
            "data": result.summary,
        }
        (out / "metrics.json").write_text(json.dumps(summary, indent=1))
        write_training_curve(out)
        if summary["memorisation"]:
            print(f"medclip: {summary['memorisation']}")
    return {**metrics, **{key: float(value) for key, value in result.validation.items() if "/health/" not in key}}
