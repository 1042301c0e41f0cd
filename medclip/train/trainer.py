"""The training loop: AdamW + warmup/cosine, gradient accumulation, clipping, bf16 autocast, DDP, exact resume.

Resume is exact: the checkpoint carries weights, optimizer moments, scheduler, RNG states, the number of batches
consumed and the EMA teacher (``train.ema``), and the sample order is a pure function of (seed, epoch), so N steps +
resume + N steps gives the same weights as 2N steps straight (tested). Frozen parameters (``freeze``, the base weights
under ``lora``) are not optimised, and the run log's first record counts trainable / frozen parameters per tower.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..checkpoint import DATA_FILE, ModelCard, save_model
from ..data.loader import make_loader
from ..device import move_to_device
from ..types import Modality
from .config import TrainConfig
from .ema import EmaTeacher, check_teacher, restore_teacher
from .gradcache import GradCache
from .launch import Runtime, autocast_context
from .logger import RunLogger
from .optim import build_optimizer, build_scheduler, describe_counts, parameter_counts
from .parallel import build_parallel, prepare_model, to_channels_last
from .resilience import NonFiniteGuard, PreemptionFlag
from .sampler import ResumableBatchSampler
from .state import load_trainer_state, trainer_files

log = logging.getLogger("medclip.train")


class _BatchesFrom:
    """Lets a DataLoader draw batches from the endless sampler, starting at a given number of consumed batches."""

    def __init__(self, sampler: ResumableBatchSampler, consumed: int) -> None:
        sampler.epoch, sampler.batch_in_epoch = divmod(consumed, sampler.batches_per_epoch)
        self.sampler = sampler

    def __iter__(self):
        return iter(self.sampler)


class Trainer:
    """Trains a model with a combined loss on a manifest dataset.

    The model maps a batch to a dict of outputs that the loss takes as keyword arguments (``ContrastiveModel`` for
    contrastive pretraining; the masked autoencoder of the MAE pre-stage has the same contract).

    Args:
        card: the model card saved with every checkpoint (its ``training`` section gains the step count).
        modalities: the fitted plugins (their state is saved with every checkpoint).
        model: the ``ContrastiveModel``.
        criterion: the ``CombinedLoss`` (owns learnable loss parameters, which are optimised and saved too).
        train_dataset: a map-style dataset of samples.
        collate: samples -> batch.
        runtime: process rank/world/device from ``setup_runtime``.
        out_dir: where logs and checkpoints go.
        train_config: the loop's settings.
        num_workers: loader workers (0 loads in the main process).
        worker_kind: "process" or "thread" loader workers (``medclip.data.loader``).
        on_skipped: called with each batch's list of skipped-row markers (for the run summary).
        provenance: JSON-able description of the training data, saved with every checkpoint.
    """

    def __init__(
        self,
        card: ModelCard,
        modalities: Mapping[str, Modality],
        model: nn.Module,
        criterion: nn.Module,
        train_dataset: Dataset,
        collate: Callable[[list], dict[str, Any]],
        runtime: Runtime,
        out_dir: str | Path,
        train_config: TrainConfig,
        num_workers: int = 0,
        worker_kind: str = "process",
        on_skipped: Callable[[list], None] | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        self.card, self.train_config = card, train_config
        self.num_workers, self.worker_kind = num_workers, worker_kind
        self.modalities = modalities
        self.runtime = runtime
        self.model = model.to(runtime.device)
        self.criterion = criterion.to(runtime.device)
        self.train_dataset, self.collate = train_dataset, collate
        self.out_dir = Path(out_dir)
        self.on_skipped = on_skipped
        self.provenance = dict(provenance or {})
        # --- scale-out (parallel.py): speed options, then DDP / FSDP wrapping. FSDP replaces the parameters with
        # sharded ones, so the optimizer is built after wrapping ---
        prepare_model(self.model, self.train_config.compile, self.train_config.channels_last)
        self.parallel = build_parallel(self.train_config.parallel, runtime)
        self.wrapped = self.parallel.wrap(self.model)
        if runtime.distributed:
            self._broadcast_loss_state()
        self.optimizer = build_optimizer([self.model, self.criterion], self.train_config)
        self.scheduler = build_scheduler(self.optimizer, self.train_config)
        # --- EMA teacher (ema.py, train.ema): copied after wrapping, so every rank starts from rank 0's weights ---
        self.ema = EmaTeacher.create(self.model, self.train_config.ema, self.train_config.parallel)
        check_teacher(self.criterion, self.ema)
        self._first_record: dict[str, int] = {}  # extra values for the run log's first record (parameter counts)
        self.step = 0
        self.consumed_batches = 0
        self.skipped_nonfinite_steps = 0
        self.empty_batches = 0
        # --- GradCache hook: encoders embed grad_cache_chunk rows at a time, the loss sees the whole batch ---
        self.grad_cache: GradCache | None = None
        if self.train_config.grad_cache_chunk > 0:
            self.grad_cache = GradCache(
                self.wrapped,
                self.criterion,
                self.train_config.grad_cache_chunk,
                forward_context=lambda: autocast_context(self.train_config.precision, self.runtime.device),
                convert=_to_float32,
            )

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoint"

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimizer, scheduler, RNG, step and sample position."""
        # The checkpoint is full (unsharded) whatever strategy wrote it; the strategy loads (and re-shards) it.
        self.parallel.load_checkpoint(path, self.model, self.criterion, self.optimizer)
        state = load_trainer_state(path, None, self.scheduler)
        restore_teacher(self.ema, path)  # --- EMA teacher ---
        self.step = int(state["step"])
        self.consumed_batches = int(state["consumed_batches"])

    def save(self, path: str | Path | None = None, full_state: tuple[Any, Any] = (None, None)) -> Path:
        """Write the checkpoint (rank 0). ``full_state``: (model, optimizer) state dicts gathered by FSDP."""
        state = {"step": self.step, "consumed_batches": self.consumed_batches, "world_size": self.runtime.world_size}
        self.card.training["steps_done"] = self.step
        return save_model(
            path or self.checkpoint_dir,
            self.model,
            self.modalities,
            self.card,
            criterion=self.criterion,
            model_state=full_state[0],
            extra_json={DATA_FILE: self.provenance} if self.provenance else None,
            write_extra=self._with_teacher(trainer_files(state, self.optimizer, self.scheduler, full_state[1])),
        )

    # --- EMA teacher hooks (ema.py) ---------------------------------------------------------------------------------
    def _with_teacher(self, write_extra: Callable[[Path], None]) -> Callable[[Path], None]:
        """The checkpoint writer, plus the teacher's ``ema.safetensors`` when there is a teacher."""
        return write_extra if self.ema is None else self.ema.writer(also=write_extra)

    def _teacher_outputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The teacher's embeddings of ``batch`` as extra loss inputs (none without a teacher), in float32."""
        if self.ema is None:
            return {}
        with autocast_context(self.train_config.precision, self.runtime.device):
            outputs = self.ema.outputs(batch, chunk_size=self.train_config.grad_cache_chunk)
        return _to_float32(outputs)

    # ----------------------------------------------------------------------------------------------------------------

    def _loader(self) -> Iterable[dict[str, Any]]:
        sampler = ResumableBatchSampler(
            len(self.train_dataset),
            self.train_config.batch_size,
            seed=self.train_config.seed,
            rank=self.runtime.rank,
            world_size=self.runtime.world_size,
        )
        # A private generator: creating the loader must not draw from the global RNG, or a resumed run's dropout
        # and augmentation would diverge from the straight run's.
        generator = torch.Generator().manual_seed(self.train_config.seed)
        workers = self.num_workers
        return make_loader(
            self.train_dataset,
            batch_sampler=_BatchesFrom(sampler, self.consumed_batches),
            collate_fn=self.collate,
            num_workers=workers,
            worker_kind=self.worker_kind,
            pin_memory=self.runtime.device.type == "cuda",
            persistent_workers=workers > 0,
            generator=generator,
        )

    def _next_batch(self, batches) -> dict[str, Any]:
        """The next non-empty batch (a batch whose every row failed to load is counted and skipped)."""
        while True:
            batch = next(batches)
            self.consumed_batches += 1
            if self.on_skipped is not None and batch.get("skipped"):
                self.on_skipped(batch["skipped"])
            if batch.get("batch_size", len(batch.get("row", []) or [1])) > 0:
                return batch
            self.empty_batches += 1

    def fit(self) -> dict[str, float]:
        """Train until ``train.steps`` (or ``train.stop_at``); returns the last logged values."""
        config = self.train_config
        logger = RunLogger(self.out_dir, enabled=self.runtime.is_main)
        batches = iter(self._loader())
        progress = None
        if self.runtime.is_main and config.progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=config.steps, initial=self.step, desc="pretrain", unit="step", dynamic_ncols=True)
        self.model.train()  # frozen modules stay in eval (medclip.nn.freeze)
        counts = parameter_counts(self.model)
        if self.runtime.is_main:
            log.info("parameters (trainable / frozen): %s", describe_counts(counts))
        self._first_record = counts  # the run log's first record of this run carries them
        last_step = min(config.steps, config.stop_at) if config.stop_at > 0 else config.steps
        guard = NonFiniteGuard(config.max_nonfinite_steps, distributed=self.runtime.distributed)
        preemption = PreemptionFlag()
        try:
            last = self._train_until(last_step, batches, logger, progress, guard, preemption)
        finally:
            preemption.close()
            if progress is not None:
                progress.close()
            logger.close()
        self.skipped_nonfinite_steps = guard.skipped
        self._save_on_main()
        return last

    def _train_until(self, last_step, batches, logger, progress, guard, preemption) -> dict[str, float]:
        config = self.train_config
        last: dict[str, float] = {}
        window_samples, window_start = 0, time.perf_counter()
        while self.step < last_step:
            totals: dict[str, float] = {}
            for micro_step in range(config.grad_accum):
                batch = move_to_device(self._next_batch(batches), self.runtime.device)
                if config.channels_last:
                    batch = to_channels_last(batch)
                last_micro = micro_step == config.grad_accum - 1
                sync = nullcontext() if last_micro else self.parallel.no_sync(self.wrapped)
                with sync:
                    teacher = self._teacher_outputs(batch)  # --- EMA teacher hook ({} without one) ---
                    if self.grad_cache is not None:  # --- GradCache hook (train.grad_cache_chunk > 0) ---
                        losses = self.grad_cache.step(batch, loss_scale=1.0 / config.grad_accum, extra_outputs=teacher)
                    else:  # --- the plain step ---
                        with autocast_context(config.precision, self.runtime.device):
                            outputs = self.wrapped(batch)
                        outputs = _to_float32(outputs)
                        losses = self.criterion(**outputs, **teacher)
                        (losses["loss"] / config.grad_accum).backward()
                for key, value in losses.items():
                    totals[key] = totals.get(key, 0.0) + float(value.detach()) / config.grad_accum
                window_samples += len(batch.get("row", [])) * self.runtime.world_size
            if self.runtime.distributed:
                self._average_loss_gradients()
            if config.clip_grad_norm > 0:
                parameters = list(self.model.parameters()) + list(self.criterion.parameters())
                totals["grad_norm"] = self.parallel.clip_grad_norm(parameters, config.clip_grad_norm)
            if guard.step_is_finite(totals["loss"], totals.get("grad_norm")):
                self.optimizer.step()
                if self.ema is not None:  # --- EMA teacher: follows every optimizer step ---
                    self.ema.update(self.model)
            # A skipped step still advances the schedule and the step count, so the sample order and the
            # learning-rate curve stay those of an uninterrupted run.
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            totals["skipped_nonfinite_steps"] = guard.skipped
            if progress is not None:
                progress.update(1)
            if self.step % max(1, config.log_every) == 0 or self.step == last_step:
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                last = {**totals, "lr": self.scheduler.get_last_lr()[0], "samples_per_s": window_samples / elapsed}
                if isinstance(getattr(self.model, "logit_scale", None), torch.Tensor):  # contrastive models have one
                    last["logit_scale"] = float(self.model.logit_scale.detach())
                logger.log(self.step, {**last, **self._first_record})
                self._first_record = {}
                if progress is not None:
                    progress.set_postfix(loss=f"{last['loss']:.3f}", samples_s=f"{last['samples_per_s']:.0f}")
                window_samples, window_start = 0, time.perf_counter()
            if config.checkpoint_every and self.step % config.checkpoint_every == 0 and self.step < last_step:
                self._save_on_main()
            if preemption.agreed(self.runtime.distributed):
                if self.runtime.is_main:
                    print(f"medclip: SIGTERM received; checkpoint at step {self.step}; continue with train.resume=auto")
                break
        return last

    def _broadcast_loss_state(self) -> None:
        """Start every rank from rank 0's loss parameters, as DDP does for the model's.

        ``pretrain`` seeds rank r with ``train.seed + r``, so a loss whose parameters are drawn from the RNG (e.g.
        prototypes) would otherwise start differently on each process; the criterion is not DDP-wrapped.
        """
        with torch.no_grad():
            for tensor in [*self.criterion.parameters(), *self.criterion.buffers()]:
                torch.distributed.broadcast(tensor, src=0)

    def _average_loss_gradients(self) -> None:
        """DDP averages the model's gradients; the loss's own parameters (e.g. SigLIP's bias) are averaged here,
        and so are model parameters the strategy leaves replicated (FSDP cannot shard the scalar logit scale)."""
        world_size = self.runtime.world_size
        for parameter in [*self.criterion.parameters(), *self.parallel.replicated_parameters(self.model)]:
            if parameter.grad is not None:
                torch.distributed.all_reduce(parameter.grad)
                parameter.grad.div_(world_size)

    def _save_on_main(self) -> None:
        # Gathering FSDP's full state is a collective: every rank takes part, rank 0 alone writes.
        model_state = self.parallel.full_model_state(self.model)
        optimizer_state = self.parallel.full_optimizer_state(self.model, self.criterion, self.optimizer)
        if self.runtime.is_main:
            self.save(full_state=(model_state, optimizer_state))
        if self.runtime.distributed:
            torch.distributed.barrier()


def _to_float32(outputs: dict[str, Any]) -> dict[str, Any]:
    """Losses run in fp32 even when the encoders ran under bf16 autocast (log-sum-exp needs the precision)."""
    converted = {}
    for key, value in outputs.items():
        if isinstance(value, dict):
            converted[key] = {
                k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in value.items()
            }
        elif torch.is_tensor(value) and value.is_floating_point():
            converted[key] = value.float()
        else:
            converted[key] = value
    return converted
