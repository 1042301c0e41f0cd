"""Training logs: a registry of experiment trackers, fanned out by ``RunLogger``, plus plain progress lines.

``train.loggers`` names the trackers (default ``[jsonl, tensorboard]``):

- ``jsonl``: ``train_log.jsonl``, one JSON object per logged step (machine-readable; the training curve is drawn
  from it; a resumed run drops the records of the steps it repeats, then appends);
- ``tensorboard``: ``tensorboard/`` event files;
- ``wandb``: Weights & Biases, offline by default (``WANDB_MODE=offline`` unless the environment says otherwise), the
  run kept under ``<out>/wandb`` for ``wandb sync`` later; optional extra ``medclip[tracking]``;
- ``mlflow``: MLflow, a file store in ``<out>/mlruns`` unless ``MLFLOW_TRACKING_URI`` names a database or a
  server; optional extra ``medclip[tracking]``.

Only the main process logs, and only numbers (losses, learning rate, throughput, diagnostics): never a config (it
holds paths), a sample, or an identifier. A third-party tracker registers with ``@LOGGERS.register("name")`` or the
``medclip.loggers`` entry-point group: a class taking ``(out_dir, resumed_at)`` with ``log(step, values)`` and
``close()``; ``resumed_at`` is the step a resumed run continues from (None for a new run): the steps after it run
again, and a tracker that can should forget what it logged for them, so each step is logged once.

With ``train.progress: false`` (batch jobs, logs to a file) a plain line replaces the progress bar at every logged
step: ``step 20/1000  loss 3.2145  lr 4.0e-04  samples/s 512``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..registry import Registry, lazy_import

DEFAULT_LOGGERS = ("jsonl", "tensorboard")

LOGGERS: Registry[type] = Registry("training logger", "medclip.loggers")


def list_loggers(pattern: str | None = None) -> list[str]:
    """Names of the training loggers (built-in and from the ``medclip.loggers`` entry points), or those matching
    ``pattern`` (``"tensor*"``): what ``train.loggers`` accepts."""
    return LOGGERS.names(pattern)


def _finite_numbers(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


@LOGGERS.register("jsonl")
class JsonlLogger:
    """``train_log.jsonl``: one object per logged step, appended (a resumed run continues the same file)."""

    def __init__(self, out_dir: Path, resumed_at: int | None = None) -> None:
        self.path = out_dir / "train_log.jsonl"
        if resumed_at is not None:
            self._forget_after(resumed_at)
        self.stream = self.path.open("a")

    def _forget_after(self, step: int) -> None:
        """Drop the records of the steps a resumed run repeats (the file is rewritten atomically)."""
        if not self.path.is_file():
            return
        from ..atomic import write_text_atomic

        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def log(self, step: int, record: Mapping[str, Any]) -> None:
        self.stream.write(json.dumps({"step": step, **record}) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


@LOGGERS.register("tensorboard")
class TensorBoardLogger:
    """TensorBoard event files in ``tensorboard/`` (``tensorboard --logdir OUT/tensorboard``)."""

    def __init__(self, out_dir: Path, resumed_at: int | None = None) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # a dependency: a broken install loses the TensorBoard view, not the run
            warnings.warn(
                f"train.loggers: tensorboard is unavailable ({error}); not writing tensorboard/", stacklevel=2
            )
            return
        purge = None if resumed_at is None else resumed_at + 1  # drop events of the steps that run again
        self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=purge)

    def log(self, step: int, record: Mapping[str, Any]) -> None:
        if self.writer is not None:
            for key, value in _finite_numbers(record).items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@LOGGERS.register("wandb")
class WandbLogger:
    """Weights & Biases, offline unless ``WANDB_MODE`` says otherwise; the run lies in ``<out>/wandb``."""

    def __init__(self, out_dir: Path, resumed_at: int | None = None) -> None:
        wandb = lazy_import("wandb", "train.loggers: wandb", "wandb")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "medclip"),
            name=out_dir.name,
            dir=str(out_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),  # no network unless the user asks for it
            reinit="create_new",
        )

    def log(self, step: int, record: Mapping[str, Any]) -> None:
        self.run.log(_finite_numbers(record), step=step)

    def close(self) -> None:
        self.run.finish()


@LOGGERS.register("mlflow")
class MlflowLogger:
    """MLflow: a file store in ``<out>/mlruns`` unless ``MLFLOW_TRACKING_URI`` names another store or server."""

    def __init__(self, out_dir: Path, resumed_at: int | None = None) -> None:
        mlflow = lazy_import("mlflow", "train.loggers: mlflow", "mlflow")
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri:
            # A plain folder next to the run's other outputs: nothing to install or serve. MLflow 3 keeps its file
            # store in maintenance and asks for this opt-in; a database (sqlite:///...) is one variable away.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            tracking_uri = (out_dir / "mlruns").resolve().as_uri()
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "medclip")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=out_dir.name).info.run_id

    def log(self, step: int, record: Mapping[str, Any]) -> None:
        for key, value in _finite_numbers(record).items():
            self.client.log_metric(self.run_id, key.replace("/", "_"), value, step=step)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class ProgressLines:
    """One plain line per logged step, for runs without a progress bar (``train.progress: false``)."""

    def __init__(self, total_steps: int, stream: TextIO | None = None) -> None:
        self.total_steps = total_steps
        self.stream = stream

    def log(self, step: int, record: Mapping[str, Any]) -> None:
        if "loss" not in record and "val/mean_R@1" in record:  # a validation record
            parts = [f"step {step}/{self.total_steps}  validation"]
            for key in ("val/loss", "val/mean_R@1", "train/mean_R@1"):
                if isinstance(record.get(key), int | float):
                    parts.append(f"{key} {record[key]:.4f}")
            print("  ".join(parts), file=self.stream or sys.stdout, flush=True)
            return
        parts = [f"step {step}/{self.total_steps}"]
        for key, label, form in (("loss", "loss", ".4f"), ("lr", "lr", ".1e"), ("samples_per_s", "samples/s", ".0f")):
            value = record.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                parts.append(f"{label} {value:{form}}" if math.isfinite(value) else f"{label} {value}")
        print("  ".join(parts), file=self.stream or sys.stdout, flush=True)


class RunLogger:
    """Fans each logged step out to the trackers named in ``train.loggers`` (main process only).

    Args:
        out_dir: the run's folder.
        enabled: False on every process but the main one.
        loggers: tracker names (``LOGGERS``); an unknown name is an error listing the available ones.
        progress_lines: print a plain line per logged step (when the progress bar is off).
        total_steps: the run's step count, for the progress lines.
        resumed_at: the step a resumed run continues from (trackers forget the steps that run again).
    """

    def __init__(
        self,
        out_dir: str | Path,
        enabled: bool = True,
        loggers: Sequence[str] = DEFAULT_LOGGERS,
        progress_lines: bool = False,
        total_steps: int = 0,
        resumed_at: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.trackers: list[Any] = []
        self.progress = ProgressLines(total_steps) if enabled and progress_lines else None
        if not enabled:
            return
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        classes = [LOGGERS.get(name) for name in dict.fromkeys(loggers)]  # all names checked before any starts
        try:
            for cls in classes:
                self.trackers.append(cls(out_dir, resumed_at))
        except BaseException:
            self.close()
            raise

    def log(self, step: int, values: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {key: _number(value) for key, value in values.items()}
        for tracker in self.trackers:
            tracker.log(step, record)
        if self.progress is not None:
            self.progress.log(step, record)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []


def _number(value: Any) -> Any:
    """A plain JSON value; non-finite numbers (a metric undefined on this batch) become null, keeping the file valid."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
