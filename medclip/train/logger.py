"""Training logs: JSON lines (machine-readable), TensorBoard (for people), and a progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class RunLogger:
    """Writes one JSON object per logged step to ``train_log.jsonl`` and the same scalars to TensorBoard.

    Only the main process logs. Values are plain numbers: metrics, never sample identifiers.
    """

    def __init__(
        self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = True, resumed_at: int | None = None
    ) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / "train_log.jsonl"
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resumed_at is not None:
            self._forget_after(resumed_at)
        self.stream = self.path.open("a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if resumed_at is None else resumed_at + 1  # drop events of steps that will run again
                self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=purge)
            except ImportError:  # tensorboard is a dependency; a broken install only loses the TensorBoard view
                self.writer = None

    def _forget_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: drop their earlier records so each step is logged
        once (the file is rewritten atomically)."""
        if not self.path.is_file():
            return
        from ..atomic import write_text_atomic

        kept = [
            line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step
        ]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{key: _number(value) for key, value in values.items()}}
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, float | int) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.stream.close()
        if self.writer is not None:
            self.writer.close()


def _number(value: Any) -> Any:
    """A plain JSON value; non-finite numbers (a metric undefined on this batch) become null, keeping the file valid."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
