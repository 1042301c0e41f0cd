"""``train.loggers``: the tracker registry (jsonl, tensorboard, wandb offline, mlflow file store), plain progress
lines when the bar is off, and a clear error for an unknown tracker."""

from __future__ import annotations

import json

import pytest

from medclip.config import build
from medclip.registry import RegistryError
from medclip.train.config import TrainConfig
from medclip.train.logger import LOGGERS, ProgressLines, RunLogger, list_loggers

STEPS = [(1, {"loss": 4.0, "lr": 1e-4, "samples_per_s": 100.0}), (2, {"loss": 3.5, "lr": 2e-4, "samples_per_s": 110.0})]


def test_the_default_trackers_and_the_registry():
    assert TrainConfig().loggers == ["jsonl", "tensorboard"]
    assert {"jsonl", "tensorboard", "wandb", "mlflow"} <= set(LOGGERS.names())
    with pytest.raises(RegistryError, match="unknown training logger 'tensorbord'; did you mean 'tensorboard'"):
        build(TrainConfig, {"loggers": ["jsonl", "tensorbord"]})


def test_jsonl_and_tensorboard(tmp_path):
    logger = RunLogger(tmp_path, loggers=["jsonl", "tensorboard"])
    for step, values in STEPS:
        logger.log(step, {**values, "undefined": float("nan")})
    logger.close()
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2] and records[1]["loss"] == 3.5
    assert records[0]["undefined"] is None  # non-finite -> null: the file stays valid JSON
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_only_the_named_trackers_write(tmp_path):
    logger = RunLogger(tmp_path, loggers=["jsonl"])
    logger.log(1, STEPS[0][1])
    logger.close()
    assert (tmp_path / "train_log.jsonl").is_file() and not (tmp_path / "tensorboard").exists()
    RunLogger(tmp_path / "other", enabled=False, loggers=["jsonl"]).log(1, STEPS[0][1])  # non-main processes
    assert not (tmp_path / "other").exists()


def test_progress_lines(capsys):
    lines = ProgressLines(total_steps=1000)
    lines.log(20, {"loss": 3.21449, "lr": 4e-4, "samples_per_s": 512.3})
    assert capsys.readouterr().out == "step 20/1000  loss 3.2145  lr 4.0e-04  samples/s 512\n"


@pytest.mark.slow
def test_wandb_offline_and_mlflow_file_store(tmp_path, monkeypatch):
    """Both extras run without network: wandb offline in <out>/wandb, mlflow's file store in <out>/mlruns."""
    pytest.importorskip("wandb", reason="optional extra medclip[tracking]")
    mlflow = pytest.importorskip("mlflow", reason="optional extra medclip[tracking]")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default, not the environment's doing
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    logger = RunLogger(out, loggers=["jsonl", "wandb", "mlflow"])
    for step, values in STEPS:
        logger.log(step, values)
    logger.close()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    client = mlflow.MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("medclip")
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(metric.step, metric.value) for metric in history] == [(1, 4.0), (2, 3.5)]
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_a_run_without_the_bar_prints_a_line_per_logged_step(small_experiment, capsys):
    from recipes.pretrain import pretrain

    config = small_experiment("train.steps=4", "train.log_every=2", "train.loggers=[jsonl]")
    assert not config.train.progress
    result = pretrain(config)
    printed = capsys.readouterr().out.splitlines()
    lines = [line for line in printed if line.startswith("step ") and "validation" not in line]
    assert [line.split("  ")[0] for line in lines] == ["step 2/4", "step 4/4"]
    assert all("loss " in line and "lr " in line and "samples/s " in line for line in lines)
    assert [line.split("  ")[0] for line in printed if "  validation  " in line] == ["step 4/4"]  # once, at the end
    assert not (result.checkpoint.parent / "tensorboard").exists()


def test_list_loggers_names_the_built_in_trackers_and_filters_by_pattern():
    assert {"jsonl", "tensorboard", "wandb", "mlflow"} <= set(list_loggers())
    assert list_loggers("tensor*") == ["tensorboard"]
