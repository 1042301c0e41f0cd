"""Runs that must end (issue 14): no training loop over empty batches, SIGTERM to the whole process group with loader
workers checkpoints and exits 0, a resume past the end says so, and a resumed run logs each step once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from medclip import config
from medclip.data import TooManySkippedError
from recipes.pretrain import Config as PretrainConfig
from recipes.pretrain import pretrain

REPOSITORY = Path(__file__).resolve().parents[3]


def corrupt_ecg_manifest(folder: Path, rows: int = 24) -> Path:
    """Every ECG is a WFDB header without a readable signal: each row passes the up-front checks (the file exists)
    and fails when loaded, so every training batch is empty."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(rows):
        (folder / f"rec{index}.hea").write_text(f"rec{index} 12 500 5000\nthis is not a signal line\n")
    table = pd.DataFrame(
        {
            "patient_id": [f"p{index}" for index in range(rows)],
            "ecg": [f"rec{index}.hea" for index in range(rows)],
            "report": [f"Sinus rhythm, report number {index}." for index in range(rows)],
            "split": ["train"] * rows,
        }
    )
    table.to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_a_run_whose_every_row_fails_to_load_stops_with_its_summary(tmp_path):
    manifest = corrupt_ecg_manifest(tmp_path / "data")
    overrides = [
        "modalities.ecg.width=16",
        "modalities.ecg.sampling_rate=100",
        "modalities.report.width=16",
        "modalities.report.layers=1",
        "modalities.report.heads=2",
        "model.embed_dim=8",
        "train.batch_size=8",
        "train.steps=50",
        "train.progress=false",
        f"data.manifest={manifest}",
        f"out={tmp_path / 'run'}",
    ]
    cfg = config.build(PretrainConfig, config.apply_overrides({"modalities": {"ecg": {}, "report": {}}}, overrides))
    began = time.perf_counter()
    with pytest.raises(TooManySkippedError) as caught:
        pretrain(cfg)
    assert time.perf_counter() - began < 120  # it stops: it does not loop over empty batches
    message = str(caught.value)
    assert "max_skip_fraction" in message and "rec" not in message  # reasons and counts, never file names
    assert not (tmp_path / "run" / "checkpoint").exists()


DRIVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repository!r})
    from tests.conftest import SMALL_EXPERIMENT
    from medclip import config
    from recipes.pretrain import Config, pretrain

    overrides = [*SMALL_EXPERIMENT, *sys.argv[1:]]
    data = config.apply_overrides({{"modalities": {{"expression": {{}}, "report": {{}}}}}}, overrides)
    pretrain(config.build(Config, data))
    print("driver finished", flush=True)
    """
)


def launch(tmp_path: Path, args: list[str]) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(repository=str(REPOSITORY)))
    return subprocess.Popen(
        [sys.executable, str(driver), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a SLURM job step or `kill -TERM -PGID` sees it
    )


def wait_for_step(log: Path, step: int, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.is_file():
            lines = log.read_text().splitlines()
            if lines and json.loads(lines[-1])["step"] >= step:
                return
        if process.poll() is not None:
            raise AssertionError(f"training ended early: {process.communicate()[1][-2000:]}")
        time.sleep(0.1)
    raise TimeoutError("training made no progress")


@pytest.mark.slow
@pytest.mark.parametrize("worker_kind", ["process", "thread"])
def test_sigterm_to_the_process_group_with_workers_checkpoints_and_exits_0(pbmc_manifest, tmp_path, worker_kind):
    out = tmp_path / "run"
    args = [
        "train.steps=2000",
        "train.log_every=1",
        "data.num_workers=2",
        f"data.worker_kind={worker_kind}",
        f"data.manifest={pbmc_manifest}",
        f"out={out}",
    ]
    process = launch(tmp_path, args)
    wait_for_step(out / "train_log.jsonl", 3, process)
    os.killpg(process.pid, signal.SIGTERM)  # the main process and every loader worker
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]
    assert "SIGTERM received" in stdout
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert 3 <= state["step"] < 2000


def test_resume_past_the_end_says_so_and_log_steps_are_never_repeated(small_experiment, tmp_path, capsys):
    out = tmp_path / "run"
    pretrain(small_experiment("train.steps=6", "train.checkpoint_every=2", out=out))
    log = out / "train_log.jsonl"
    # a kill after step 6's checkpoint but with two more steps logged: simulate by appending what a run would log
    records = [json.loads(line) for line in log.read_text().splitlines()]
    records = [r for r in records if "loss" in r]  # training records (validation records carry val/ metrics)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    with log.open("a") as stream:
        stream.write(json.dumps({**records[-1], "step": 7}) + "\n")
    pretrain(small_experiment("train.steps=8", "train.resume=auto", out=out))
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines() if '"loss"' in line]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]  # step 7 re-run and logged once
    capsys.readouterr()
    result = pretrain(small_experiment("train.steps=4", "train.resume=auto", out=out))
    said = capsys.readouterr()
    assert "already at step 8" in said.out + said.err and "train.steps=4" in said.out + said.err
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 8
    assert result.checkpoint == out / "checkpoint"
