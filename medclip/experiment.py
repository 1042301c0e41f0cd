"""The configuration of one pretraining run: what ``medclip pretrain --config X.yaml`` reads.

Each section is a dataclass; the YAML file mirrors it. ``modalities`` and ``loss`` are free-form mappings validated
by their owners (each modality's ``config_class``; the loss registry), so third-party plugins bring their own keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    embed_dim: int = 128  # shared embedding size; 128-512 is the usual CLIP range
    head_hidden_dim: int = 0  # 0 = linear projection head (CLIP); >0 = two-layer MLP head (ConVIRT, MedCLIP)
    init_temperature: float = 0.07  # CLIP's initial temperature
    max_logit_scale: float = 100.0  # CLIP's clamp on the logit scale, for stability


@dataclass
class DataConfig:
    manifest: str = ""  # CSV or Parquet, one row per study (see README "Manifest format")
    root: str = ""  # relative paths in the manifest are resolved against this (default: the manifest's folder)
    val_fraction: float = 0.1  # of patients, for rows without a `split` column value
    test_fraction: float = 0.1
    split_seed: int = 0  # seed of the deterministic patient-hash split
    num_workers: int = 0  # loader workers; 0 loads in the main process
    # process | thread. Threads suit cached / memory-mapped inputs (CT/OCT/ECG caches), whose reads and array work
    # release the GIL: no per-sample copy between processes (several times faster warm). Processes suit CPU-heavy
    # Python decoding (uncached DICOM, tokenising). With threads, random transforms that use the per-sample
    # generator (CT/OCT augmentation) are reproducible; others draw from the global RNG shared with the training
    # step, so they (and dropout) are not reproducible run to run. See docs/ct.md "Loader workers".
    worker_kind: str = "process"
    max_skip_fraction: float = 0.5  # abort when more than this fraction of rows is unusable: the manifest is wrong

    def __post_init__(self) -> None:
        from .config import ConfigError
        from .data.loader import WORKER_KINDS

        if self.worker_kind not in WORKER_KINDS:
            raise ConfigError(f"data.worker_kind must be one of {', '.join(WORKER_KINDS)}, got {self.worker_kind!r}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 64  # per process, per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    lr: float = 5e-4
    weight_decay: float = 0.1  # CLIP's AdamW decay; not applied to biases, norms, or the logit scale
    betas: tuple[float, float] = (0.9, 0.98)  # CLIP's Adam betas
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    clip_grad_norm: float = 1.0  # 0 disables clipping
    precision: str = "auto"  # auto | fp32 | bf16; auto = bf16 autocast where the device supports it
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # 0 = only at the end
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True
    stop_at: int = 0  # stop (with a checkpoint) after this step although the schedule runs to `steps`; 0 = run all
    resume: str = ""  # a checkpoint directory to continue from, or "auto": this run's own checkpoint if there is one
    max_nonfinite_steps: int = 10  # consecutive NaN/inf steps (skipped, counted) before training stops
    parallel: str = "ddp"  # ddp | fsdp (FSDP2 sharding per encoder/block, for encoders too big to replicate)
    compile: bool = False  # torch.compile each encoder (the first steps are slow while it compiles)
    channels_last: bool = False  # channels-last(-3d) memory format for conv weights and volume/image inputs
    grad_cache_chunk: int = 0  # >0: GradCache, encoders see this many rows at a time (same gradients); 0 = off


@dataclass
class ExperimentConfig:
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> that modality's options
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: dict[str, Any] = field(default_factory=lambda: {"clip": 1.0})  # name -> weight, or name -> {weight, ...}
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/medclip"
