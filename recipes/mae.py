"""Masked-autoencoder pre-stage for the CT/OCT ViT on unpaired volumes (``medclip mae --config X.yaml``).

Why: an encoder trained from scratch on a few hundred volume-report pairs memorises its training studies. Hiding 75 %
of every volume's patches and reconstructing them teaches the ViT anatomy from volumes alone, with no reports, so
the many unreported scans of an archive can train it first. Contrastive pretraining then starts from these weights
(``modalities.ct.weights: runs/mae/ct_encoder.safetensors``, or ``train.init_from: runs/mae/checkpoint``).
docs/mae.md says when it pays off and what it costs.

Copy ``recipes/configs/ct_mae.yaml``, give ``modalities`` exactly the options the later pretraining run will use (so
the encoder's shapes match), point ``data.manifest`` at a manifest whose rows need only ``patient_id`` and the volume
column, and run. Outputs in ``out``: ``checkpoint/`` (resumable; card ``training.recipe: mae``), the encoder weights
alone as ``<modality>_encoder.safetensors``, ``train_log.jsonl``, ``training_curve.png``, ``reconstructions.png``
(slices of held-out volumes: input, hidden patches blanked, reconstruction), ``metrics.json`` (with the held-out
reconstruction loss) and ``data_summary.json``. Under ``torchrun`` it trains with DDP (or FSDP), and
``train.resume=auto`` continues an interrupted run exactly, masks included.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from medclip import __version__
from medclip.atomic import write_atomic
from medclip.checkpoint import ENCODER_ONLY, CheckpointError, ModelCard, read_card, read_weights, restore_modalities
from medclip.config import ConfigError, to_dict
from medclip.data import check_skip_fraction, collate_samples, read_manifest
from medclip.data.dataset import ManifestDataset
from medclip.data.loader import make_loader
from medclip.data.manifest import Manifest
from medclip.data.prepare import data_provenance, prepare_datasets
from medclip.device import move_to_device
from medclip.factory import build_modalities
from medclip.losses import build_loss
from medclip.train import TrainConfig, Trainer
from medclip.train.launch import Runtime, autocast_context, setup_runtime, teardown_runtime
from medclip.train.resilience import resolve_resume
from medclip.types import Modality
from modalities.volume.mae import MaskedAutoencoderConfig, MaskedVolumeAutoencoder, build_masked_autoencoder
from modalities.volume.mae.figure import plot_reconstructions, reconstructed_volumes
from recipes.pretrain import DataConfig, seed_everything, write_training_curve

COMMAND = "mae"
HELP = "masked-autoencoder pre-stage of the CT/OCT ViT on unpaired volumes (no reports needed)"
DEFAULT_CONFIG = "ct_mae.yaml"

ENCODER_FILE = "{modality}_encoder.safetensors"  # what a modality's `weights:` option loads
FIGURE_FILE = "reconstructions.png"

log = logging.getLogger("medclip.mae")


@dataclass
class Config:
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)  # exactly one volume modality -> its options
    mae: MaskedAutoencoderConfig = field(default_factory=MaskedAutoencoderConfig)
    data: DataConfig = field(default_factory=DataConfig)  # rows need only patient_id and the volume column
    train: TrainConfig = field(default_factory=TrainConfig)
    val_volumes: int = 64  # held-out (val split) volumes whose reconstruction loss is measured at the end; 0 = none
    figure_volumes: int = 2  # volumes in reconstructions.png (3 slices each); 0 = no figure
    out: str = "runs/mae"

    def check(self) -> None:
        """Refuse settings MAE cannot run with, before any data is read."""
        if not self.data.manifest:
            raise ConfigError("data.manifest is empty: point it at a CSV or Parquet manifest (patient_id + volume)")
        if len(self.modalities) != 1:
            raise ConfigError(
                f"modalities: MAE pretraining trains one volume encoder; name exactly one modality (e.g. ct), "
                f"got {len(self.modalities)}"
            )
        if self.val_volumes < 0 or self.figure_volumes < 0:
            raise ConfigError("val_volumes and figure_volumes must be >= 0")
        if self.train.grad_cache_chunk > 0:
            raise ConfigError("train.grad_cache_chunk: GradCache serves contrastive losses; MAE needs none (set 0)")

    @property
    def modality(self) -> str:
        return next(iter(self.modalities))


@dataclass
class MaeResult:
    """What a run produced: the checkpoint, the encoder weights file, final training values, held-out values."""

    checkpoint: Path
    encoder_weights: Path | None
    metrics: dict[str, float]
    summary: dict[str, Any]
    finished: bool  # False when the run stopped early (SIGTERM): continue it with train.resume=auto


def model_card(cfg: Config) -> ModelCard:
    """The card of MAE checkpoints: the modality's options and how the encoder was trained (no paths, no data)."""
    training = {
        "recipe": COMMAND,
        ENCODER_ONLY: True,  # no projection head, no second tower: medclip.load_model refuses it (use init_from)
        "mae": to_dict(cfg.mae),
        "split": {"val_fraction": cfg.data.val_fraction, "test_fraction": cfg.data.test_fraction,
                  "split_seed": cfg.data.split_seed},
        "steps": cfg.train.steps,
        "batch_size": cfg.train.batch_size,
        "seed": cfg.train.seed,
    }  # fmt: skip
    return ModelCard(modalities=cfg.modalities, training=training)


def _check_resumable(path: Path, cfg: Config) -> ModelCard:
    saved = read_card(path)
    if saved.training.get("recipe") != COMMAND:
        raise ConfigError(
            f"train.resume: the checkpoint was written by `medclip {saved.training.get('recipe')}`, not `medclip mae`"
        )
    if saved.modalities != cfg.modalities or saved.training.get("mae") != to_dict(cfg.mae):
        raise ConfigError("train.resume: the checkpoint's modality or mae settings differ from this config's")
    return saved


def encoder_state(model_state: dict[str, torch.Tensor], modality: str) -> dict[str, torch.Tensor]:
    """The ``encoders.<modality>.*`` entries of a model state dict, without that prefix: the encoder's state dict.

    Raises:
        CheckpointError: the state holds no encoder of that modality.
    """
    prefix = f"encoders.{modality}."
    state = {key[len(prefix) :]: value for key, value in model_state.items() if key.startswith(prefix)}
    if not state:
        raise CheckpointError(f"the checkpoint holds no {modality!r} encoder (no 'model.{prefix}*' weights)")
    return state


def export_encoder_weights(checkpoint: str | Path, modality: str, path: str | Path) -> Path:
    """Write a checkpoint's ``modality`` encoder, alone, as a safetensors state dict (what ``weights:`` loads).

    The file is read back from the written checkpoint (not the live model), so it is the full state whatever the
    parallel strategy, and it holds exactly the keys of the encoder pretraining builds. Metadata: the modality, the
    writing recipe and the steps trained; no path, no identifier.
    """
    card = read_card(checkpoint)
    model_state, _ = read_weights(checkpoint)
    state = encoder_state(model_state, modality)
    metadata = {
        "format": "pt",
        "medclip_version": __version__,
        "modality": modality,
        "recipe": str(card.training.get("recipe", "")),
        "steps": str(card.training.get("steps_done", "")),
    }
    return write_atomic(Path(path), lambda temp: save_file(state, str(temp), metadata))


def run_mae(cfg: Config, runtime: Runtime | None = None) -> MaeResult:
    """Train the masked autoencoder; export the encoder; measure held-out reconstruction; draw reconstructions.

    Args:
        cfg: the recipe's config.
        runtime: process layout; by default read from the torchrun environment (single process otherwise).
    """
    cfg.check()
    resume = resolve_resume(cfg.train.resume, cfg.out)
    own_runtime = runtime is None
    runtime = runtime or setup_runtime(cfg.train.device)
    try:
        seed_everything(cfg.train.seed + runtime.rank)
        if resume is not None:
            modalities = restore_modalities(resume, _check_resumable(resume, cfg))
        else:
            modalities = build_modalities(cfg.modalities)
        plugin = modalities[cfg.modality]
        model = build_masked_autoencoder(plugin, cfg.mae, seed=cfg.train.seed)
        manifest = read_manifest(
            cfg.data.manifest,
            list(modalities),
            root=cfg.data.root or None,
            normalize_patient_ids=cfg.data.normalize_patient_ids,
        )
        splits = cfg.data.assign(manifest)
        datasets, summary = prepare_datasets(manifest, modalities, splits, resume is None, cfg.data.confine_paths)
        check_skip_fraction(summary, manifest.total_rows, cfg.data.max_skip_fraction)
        trainer = Trainer(
            model_card(cfg),
            modalities,
            model,
            build_loss({"mae": {"normalize_target": cfg.mae.normalize_target}}),
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
        )
        if resume is not None:
            trainer.resume(resume)
        metrics = trainer.fit()
        last_step = min(cfg.train.steps, cfg.train.stop_at) if cfg.train.stop_at > 0 else cfg.train.steps
        finished = trainer.step >= last_step
        encoder_file = None
        if runtime.is_main:
            out = Path(cfg.out)
            encoder_file = export_encoder_weights(
                trainer.checkpoint_dir, cfg.modality, out / ENCODER_FILE.format(modality=cfg.modality)
            )
            if finished:  # after SIGTERM the job has seconds left: checkpoint only, evaluate when it is resumed
                figure_rows = datasets["val"] if len(datasets["val"]) else _eval_view(manifest, modalities, splits)
                metrics.update(evaluate(cfg, modalities, trainer.checkpoint_dir, datasets["val"], figure_rows, runtime))
            (out / "data_summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
            numbers = {key: float(value) for key, value in metrics.items()}
            record = {"train": numbers, "finished": finished, "data": summary.to_dict()}
            (out / "metrics.json").write_text(json.dumps(record, indent=1))
            write_training_curve(out)
            if summary.total():
                print(summary.render())
        return MaeResult(trainer.checkpoint_dir, encoder_file, metrics, summary.to_dict(), finished)
    finally:
        if own_runtime:
            teardown_runtime(runtime)


def _eval_view(manifest: Manifest, modalities: dict[str, Modality], splits: dict[int, str]) -> ManifestDataset:
    """The training rows with evaluation transforms (no augmentation), for a figure when there is no val split."""
    dataset = ManifestDataset(manifest, modalities, split="train", train=False, splits=splits)
    dataset.set_transforms({name: plugin.transforms(train=False) for name, plugin in modalities.items()})
    return dataset


def load_autoencoder(cfg: Config, modalities: dict[str, Modality], checkpoint: Path) -> MaskedVolumeAutoencoder:
    """The autoencoder of a checkpoint, loaded strictly, in evaluation mode (its masks continue the run's draws)."""
    model = build_masked_autoencoder(modalities[cfg.modality], cfg.mae, seed=cfg.train.seed)
    model_state, _ = read_weights(checkpoint)
    model.load_state_dict(model_state, strict=True)
    return model.eval()


@torch.no_grad()
def evaluate(
    cfg: Config,
    modalities: dict[str, Modality],
    checkpoint: Path,
    val_dataset: ManifestDataset,
    figure_dataset: ManifestDataset,
    runtime: Runtime,
) -> dict[str, float]:
    """Held-out reconstruction loss over up to ``val_volumes`` val volumes, and ``reconstructions.png``.

    Runs on the main process alone with a model rebuilt from the checkpoint (an FSDP-sharded model cannot run on
    one rank). Returns ``val_mae_loss`` (mean over volumes) and ``val_volumes`` (how many were scored).
    """
    model = load_autoencoder(cfg, modalities, checkpoint).to(runtime.device)
    criterion = build_loss({"mae": {"normalize_target": cfg.mae.normalize_target}})
    results: dict[str, float] = {}
    if cfg.val_volumes and len(val_dataset):
        total, volumes = 0.0, 0
        for batch in _batches(val_dataset, cfg, modalities, cfg.val_volumes):
            outputs = _reconstruct(model, batch, cfg, runtime)
            rows = int(outputs["reconstruction"]["present"].sum())
            total += float(criterion(**outputs)["mae_loss"]) * rows
            volumes += rows
        if volumes:
            results.update(val_mae_loss=total / volumes, val_volumes=float(volumes))
    if cfg.figure_volumes and len(figure_dataset):
        batch = next(iter(_batches(figure_dataset, cfg, modalities, cfg.figure_volumes)), None)
        if batch is not None:
            reconstruction = _reconstruct(model, batch, cfg, runtime)["reconstruction"]
            volumes = reconstructed_volumes(model.grid, reconstruction, cfg.mae.normalize_target)
            held_out = figure_dataset is val_dataset
            title = f"{cfg.modality} reconstructions ({'held-out' if held_out else 'training'} volumes, " + (
                f"{cfg.mae.mask_ratio:.0%} of patches hidden)"
            )
            plot_reconstructions(*volumes, Path(cfg.out) / FIGURE_FILE, title=title)
    return results


def _batches(dataset: ManifestDataset, cfg: Config, modalities: dict[str, Modality], limit: int):
    """Batches over the first ``limit`` rows of ``dataset`` (rows that fail to load are skipped, as in training)."""
    rows = list(range(min(limit, len(dataset))))
    subset = torch.utils.data.Subset(dataset, rows)
    loader = make_loader(
        subset,
        batch_size=max(1, min(cfg.train.batch_size, limit)),
        collate_fn=partial(collate_samples, modalities=modalities),
        num_workers=cfg.data.num_workers,
        worker_kind=cfg.data.worker_kind,
    )
    for batch in loader:
        if batch["batch_size"] > 0:
            yield batch


def _reconstruct(model: MaskedVolumeAutoencoder, batch: dict[str, Any], cfg: Config, runtime: Runtime):
    batch = move_to_device(batch, runtime.device)
    with autocast_context(cfg.train.precision, runtime.device):
        outputs = model(batch)
    reconstruction = {
        key: value.float() if value.is_floating_point() else value for key, value in outputs["reconstruction"].items()
    }
    return {"reconstruction": reconstruction}


def main(cfg: Config) -> dict[str, float]:
    result = run_mae(cfg)
    if result.encoder_weights is not None:  # the main process
        print(f"medclip mae: encoder weights in {result.encoder_weights}")
        if not result.finished:
            print("medclip mae: stopped before the last step; continue with train.resume=auto")
    return {key: float(value) for key, value in result.metrics.items()}
