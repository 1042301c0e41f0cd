"""``benchmarks/train_step.py --tiny`` runs end to end (a real subprocess) and prints both MFU figures and the ratio."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.paths import REPOSITORY

ROOT = REPOSITORY


def test_train_step_benchmark_tiny_runs_and_reports_mfu():
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    command = [sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--tiny", "--steps", "1", "--warmup", "1"]
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-2000:]
    output = completed.stdout
    assert re.search(r"^device: CPU .*peak: [0-9.]+ TFLOP/s \[measured", output, re.MULTILINE), output
    figures = re.findall(
        r"^(medclip|open_clip) .*GFLOP/step, ([0-9.]+) samples/s, MFU ([0-9.]+)%$", output, re.MULTILINE
    )
    assert [name for name, _, _ in figures] == ["medclip", "open_clip"], output
    for _, samples_per_s, mfu in figures:
        assert float(samples_per_s) > 0 and 0 < float(mfu) <= 100
    ratio = re.search(r"^MFU ratio medclip / open_clip: ([0-9.]+)$", output, re.MULTILINE)
    assert ratio is not None and float(ratio.group(1)) > 0, output
