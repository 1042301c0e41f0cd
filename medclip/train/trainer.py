"""The training loop: AdamW + warmup/cosine, gradient accumulation, clipping, bf16 autocast, DDP, exact resume.

Resume is exact: the checkpoint carries weights, optimizer moments, scheduler, RNG states, the number of batches
consumed and the EMA teacher (``train.ema``), and the sample order is a pure function of (seed, epoch) and, for
hard-negative batches, the saved neighbour table (``train.batching``, medclip/train/batching), so N steps + resume + N
steps gives the same weights as 2N steps straight (tested). Frozen parameters (``freeze``, the base weights
under ``lora``) are not optimised, and the run log's first record counts trainable / frozen parameters per tower.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..checkpoint import DATA_FILE, ModelCard, save_model
from ..data import SkipSummary, TooManySkippedError, check_skip_fraction
from ..data.loader import make_loader
from ..device import move_to_device, outputs_to_float32
from ..types import Modality
from .batching import build_batching
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
        summary: the run's skip summary; rows that fail at load time are added to it, and the run stops
            (``TooManySkippedError``) once more than ``max_skip_fraction`` of ``total_rows`` are unusable, or when a
            whole pass over the training rows yields no usable batch.
        max_skip_fraction: see ``summary``.
        total_rows: the manifest's row count, the base of ``max_skip_fraction`` (default: the training rows).
        provenance: JSON-able description of the training data, saved with every checkpoint.
        make_validator: ``(model as wrapped for training, criterion, teacher outputs of a batch) -> validate()``,
            where ``validate()`` returns a dict of metrics (``medclip.eval.validation.Validator``); run every
            ``train.val_every`` steps and at the end. The best model by ``train.best_metric`` is saved to
            ``out_dir / "best"``, and ``train.early_stopping_patience`` validations without improvement end the run.
            None: no validation.
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
        summary: SkipSummary | None = None,
        max_skip_fraction: float = 1.0,
        total_rows: int | None = None,
        provenance: Mapping[str, Any] | None = None,
        make_validator: Callable[..., Callable[[], dict[str, float]]] | None = None,
    ) -> None:
        self.card, self.train_config = card, train_config
        self.num_workers, self.worker_kind = num_workers, worker_kind
        self.modalities = modalities
        self.runtime = runtime
        self.model = model.to(runtime.device)
        self.criterion = criterion.to(runtime.device)
        self.train_dataset, self.collate = train_dataset, collate
        self.out_dir = Path(out_dir)
        self.summary = summary if summary is not None else SkipSummary()
        self.max_skip_fraction = max_skip_fraction
        self.total_rows = total_rows if total_rows is not None else len(train_dataset)
        self.provenance = dict(provenance or {})
        self.validator: Callable[[], dict[str, float]] | None = None
        self.validation: dict[str, float] = {}  # the last validation's metrics
        self.best: dict[str, Any] = {}  # {"metric", "value", "step"} of the best validation so far
        self.stale_validations = 0  # validations since best_metric last improved
        self._warned_best_metric = False
        self.stopped_early = False
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
        if make_validator is not None:  # the validation loss sees what the training loss sees (teacher included)
            self.validator = make_validator(self.wrapped, self.criterion, self._teacher_outputs)
        # --- batch composition (batching/, train.batching): which rows share a batch; resumable, rank-sliced ---
        self.batching = build_batching(
            train_config.batching, train_dataset, train_config.batch_size, train_config.seed, runtime.rank,
            runtime.world_size,
        )  # fmt: skip
        if train_config.batching.kind == "hard_negative" and train_config.parallel == "fsdp":
            raise ValueError("train.batching.kind=hard_negative does not support train.parallel=fsdp yet")
        self._first_record: dict[str, int] = {}  # extra values for the run log's first record (parameter counts)
        self.step = 0
        self.resumed_at: int | None = None  # the step a resumed run continues from
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
                convert=outputs_to_float32,
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
        self.step = self.resumed_at = int(state["step"])
        self.consumed_batches = int(state["consumed_batches"])
        self.best = dict(state.get("best") or {})
        self.stale_validations = int(state.get("stale_validations", 0))
        self.batching.load_state_dict(state.get("batching"), Path(path))  # --- batch composition ---

    def save(self, path: str | Path | None = None, full_state: tuple[Any, Any] = (None, None)) -> Path:
        """Write the checkpoint (rank 0). ``full_state``: (model, optimizer) state dicts gathered by FSDP."""
        state = {
            "step": self.step,
            "consumed_batches": self.consumed_batches,
            "world_size": self.runtime.world_size,
            "best": self.best,
            "stale_validations": self.stale_validations,
            "batching": self.batching.state_dict(),  # --- batch composition ---
        }
        self.card.training["steps_done"] = self.step
        return save_model(
            path or self.checkpoint_dir,
            self.model,
            self.modalities,
            self.card,
            criterion=self.criterion,
            model_state=full_state[0],
            extra_json={DATA_FILE: self.provenance} if self.provenance else None,
            write_extra=self.batching.writer(
                self._with_teacher(trainer_files(state, self.optimizer, self.scheduler, full_state[1]))
            ),  # --- batch composition: its own files (the hard-negative table) ---
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
        return outputs_to_float32(outputs)

    # --- batch composition hook (batching/): hard-negative batches re-embed the training rows every few steps ----
    def _refresh_batching(self) -> bool:
        """Refresh what the composition depends on when it is due at this step; True when the loader must restart
        (batches already prefetched were composed from the old table)."""
        if not self.batching.refresh_due(self.step):
            return False
        self.batching.refresh(
            self.model, dict(self.modalities), self.step, self.consumed_batches, self.runtime,
            self.train_config.precision,
        )  # fmt: skip
        return True

    # ----------------------------------------------------------------------------------------------------------------

    def _loader(self) -> Iterable[dict[str, Any]]:
        # A private generator: creating the loader must not draw from the global RNG, or a resumed run's dropout
        # and augmentation would diverge from the straight run's.
        generator = torch.Generator().manual_seed(self.train_config.seed)
        workers = self.num_workers
        return make_loader(
            self.train_dataset,
            batch_sampler=self.batching.from_batch(self.consumed_batches),  # --- batch composition ---
            collate_fn=self.collate,
            num_workers=workers,
            worker_kind=self.worker_kind,
            pin_memory=self.runtime.device.type == "cuda",
            persistent_workers=workers > 0,
            generator=generator,
        )

    def _next_batch(self, batches) -> dict[str, Any]:
        """The next non-empty batch; rows that failed to load are counted, and a run that cannot find usable data
        stops instead of looping over empty batches."""
        empty_in_a_row = 0
        batches_per_pass = max(1, -(-len(self.train_dataset) // self.train_config.batch_size))
        while True:
            batch = next(batches)
            self.consumed_batches += 1
            if batch.get("skipped") and self.summary.add_markers(batch["skipped"]):
                check_skip_fraction(self.summary, self.total_rows, self.max_skip_fraction)
            if batch.get("batch_size", len(batch.get("row", []) or [1])) > 0:
                return batch
            self.empty_batches += 1
            empty_in_a_row += 1
            if empty_in_a_row >= batches_per_pass:
                raise TooManySkippedError(
                    f"a whole pass over the {len(self.train_dataset)} training rows gave no usable batch: every row "
                    f"failed to load.\n{self.summary.render()}"
                )

    def fit(self) -> dict[str, float]:
        """Train until ``train.steps`` (or ``train.stop_at``); returns the last logged values."""
        config = self.train_config
        last_step = min(config.steps, config.stop_at) if config.stop_at > 0 else config.steps
        if self.step >= last_step:  # a resume past the end: nothing to do, and the user must know why
            if self.runtime.is_main:
                print(
                    f"medclip: the checkpoint is already at step {self.step} and train.steps={config.steps} "
                    f"(train.stop_at={config.stop_at}): nothing to train; raise train.steps to continue"
                )
            return {}
        logger = RunLogger(  # --- trackers (train.loggers); a plain line per logged step without the bar ---
            self.out_dir,
            self.runtime.is_main,
            config.loggers,
            progress_lines=not config.progress,
            total_steps=config.steps,
            resumed_at=self.resumed_at,
        )
        self._refresh_batching()  # --- batch composition hook ---
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
            if self._refresh_batching():  # --- batch composition hook: batches from the refreshed table ---
                getattr(batches, "close", lambda: None)()
                batches = iter(self._loader())
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
                        outputs = outputs_to_float32(outputs)
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
            validate = self.validator is not None and (
                self.step == last_step or (config.val_every > 0 and self.step % config.val_every == 0)
            )
            if validate and self._validate(logger):
                break  # early stopping (the final checkpoint is written by fit)
            if config.checkpoint_every and self.step % config.checkpoint_every == 0 and self.step < last_step:
                self._save_on_main()
            if preemption.agreed(self.runtime.distributed):
                if self.runtime.is_main:
                    print(f"medclip: SIGTERM received; checkpoint at step {self.step}; continue with train.resume=auto")
                break
        return last

    def _validate(self, logger: RunLogger) -> bool:
        """Validate, log, keep the best model; returns True when early stopping asks the run to end.

        The RNG states are restored afterwards, so validating never changes what training draws next (a run with
        and without validation, or resumed around a validation, trains identically).
        """
        from .state import restore_rng_state, rng_state

        saved = rng_state()
        try:
            metrics = self.validator()
        finally:
            restore_rng_state(saved)
        self.validation = metrics
        logger.log(self.step, metrics)
        metric = self.train_config.best_metric
        value = metrics.get(metric)
        if value is None and not self._warned_best_metric and self.runtime.is_main:
            self._warned_best_metric = True  # a misspelt or unavailable metric must not silently keep no best/
            parts = metric.split("/")
            related: list[str] = []
            for depth in range(len(parts) - 1, -1, -1):  # the metrics sharing the longest leading path
                prefix = "/".join(parts[:depth])
                related = sorted(name for name in metrics if name.startswith(prefix))[:12]
                if related:
                    break
            print(
                f"medclip: warning: train.best_metric {metric!r} is not among this run's validation metrics, so no "
                f"best/ checkpoint is kept (the run goes on); some that are: {', '.join(related)}"
            )
        if value is None or not np.isfinite(value):
            return False
        if not self.best or value > self.best["value"]:
            self.best = {"metric": metric, "value": float(value), "step": self.step}
            self.stale_validations = 0
            self._save_on_main(self.out_dir / "best", with_trainer_state=False)
            return False
        self.stale_validations += 1
        patience = self.train_config.early_stopping_patience
        if patience and self.stale_validations >= patience:
            self.stopped_early = True
            if self.runtime.is_main:
                print(
                    f"medclip: {metric} has not improved for {self.stale_validations} validations (best "
                    f"{self.best['value']:.4f} at step {self.best['step']}); stopping early at step {self.step}"
                )
            return True
        return False

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

    def _save_on_main(self, path: Path | None = None, with_trainer_state: bool = True) -> None:
        # Gathering FSDP's full state is a collective: every rank takes part, rank 0 alone writes.
        model_state = self.parallel.full_model_state(self.model)
        optimizer_state = None
        if with_trainer_state:
            optimizer_state = self.parallel.full_optimizer_state(self.model, self.criterion, self.optimizer)
        if self.runtime.is_main:
            if with_trainer_state:
                self.save(path, full_state=(model_state, optimizer_state))
            else:  # the best model: weights, card and preprocessing, for load_model (not for resuming)
                self.card.training["best"] = dict(self.best)
                # its training patients too: evaluation recipes refuse a checkpoint that does not name them
                patients = {DATA_FILE: self.provenance} if self.provenance else None
                save_model(path, self.model, self.modalities, self.card, self.criterion, model_state, patients)
        if self.runtime.distributed:
            torch.distributed.barrier()
