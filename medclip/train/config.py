"""``TrainConfig``: the settings of the training loop (what ``train:`` holds in a pretraining config).

The loop reads nothing else from a recipe's config: data, model and loss are handed to the ``Trainer`` already built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from .batching.config import BatchingConfig


@dataclass
class EmaConfig:
    """The EMA teacher (``medclip.train.ema``): an exponential moving average of the model's weights.

    Attributes:
        decay: teacher = decay * teacher + (1 - decay) * model after every optimizer step; 0 = no teacher. The teacher
            averages over roughly 1 / (1 - decay) steps: 0.995 (ALBEF's momentum) ~ 200 steps, 0.999 ~ 1000.
    """

    decay: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ConfigError(f"train.ema.decay must be in [0, 1) (0 = off), got {self.decay}")

    @property
    def enabled(self) -> bool:
        return self.decay > 0


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
    # experiment trackers (medclip/train/logger.py): jsonl | tensorboard | wandb | mlflow (the last two offline by
    # default, extra medclip[tracking]); the training curve is drawn from jsonl
    loggers: list[str] = field(default_factory=lambda: ["jsonl", "tensorboard"])
    # --- validation on held-out patients (medclip/eval/validation.py): the only sign of memorisation ---
    val_every: int = 100  # validate every N steps (and always at the end); 0 = only at the end
    best_metric: str = "val/mean_R@1"  # the validation metric that picks the best/ checkpoint (higher is better)
    early_stopping_patience: int = 0  # stop after this many validations without improving best_metric; 0 = never
    # Warm start of a NEW run (ignored on resume): a medclip checkpoint directory whose towers (encoder + head, and the
    # learned tokenizer / gene vocabulary) the run starts from; docs/warm_start.md. Foreign weights: `weights:`.
    init_from: str = ""
    init_modalities: list[str] = field(default_factory=list)  # towers taken from init_from; empty = all shared ones
    init_heads: bool = True  # also take each tower's projection head when the checkpoint has one
    init_logit_scale: bool = False  # also take the learned temperature

    ema: EmaConfig = field(default_factory=EmaConfig)  # EMA teacher for the `distill` / `cwcl` losses; decay 0 = off
    # which rows share a batch: random | site_stratified | same_site | hard_negative (docs/batching.md)
    batching: BatchingConfig = field(default_factory=BatchingConfig)

    def __post_init__(self) -> None:
        from .logger import LOGGERS

        for name in self.loggers:
            LOGGERS.get(name)  # an unknown tracker fails here, naming the available ones, not after data loading
        if self.val_every < 0 or self.early_stopping_patience < 0:
            raise ConfigError("train.val_every and train.early_stopping_patience must be >= 0")
