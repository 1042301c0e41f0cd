"""The ``medclip`` command line: help, config errors, inspect, recipes, shipped configs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from medclip import config
from medclip.cli import main
from medclip.factory import build_modalities
from medclip.recipe_registry import RECIPES, bundled_configs


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medclip.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands():
    finished = run_cli("--help")
    assert finished.returncode == 0
    for command in ("quickstart", "pretrain", "inspect", "recipes"):
        assert command in finished.stdout


def test_unknown_options_are_still_refused(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--outt", "x"])
    assert "unrecognized arguments: --outt" in capsys.readouterr().err


def test_misspelled_override_is_a_clear_error(capsys):
    assert main(["pretrain", "train.stepz=3"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err


def test_unknown_modality_in_config_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"modalities": {"reprot": {}}, "data": {"manifest": "x.csv"}}))
    assert main(["pretrain", "--config", str(path)]) == 2
    assert "did you mean 'report'" in capsys.readouterr().err


def test_inspect_expression_and_report(pbmc_manifest, tmp_path, capsys):
    h5ad = pbmc_manifest.parent / "pbmc68k_reduced.h5ad"
    assert main(["inspect", f"{h5ad}#row=3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["modality"] == "expression"
    assert summary["data"] == {"shape": [765], "dtype": "float32"}
    assert summary["input_pseudonym"].startswith("s-")
    assert "pbmc68k" not in json.dumps(summary)  # never the file name

    report = tmp_path / "Doe_John_report.txt"
    report.write_text("FINDINGS: No focal consolidation.\nIMPRESSION: Normal chest.")
    assert main(["inspect", str(report), "--modality", "report"]) == 0
    text = capsys.readouterr().out
    assert json.loads(text)["modality"] == "report"
    assert "Doe" not in text and "consolidation" not in text


def test_recipes_list_and_copy(tmp_path, capsys):
    assert main(["recipes", "list"]) == 0
    assert "quickstart.yaml" in capsys.readouterr().out
    destination = tmp_path / "mine.yaml"
    assert main(["recipes", "copy", "pretrain", str(destination)]) == 0
    assert yaml.safe_load(destination.read_text())["data"]["manifest"]
    assert main(["recipes", "copy", "pretrain", str(destination)]) == 2  # never overwrites


def test_every_yaml_in_recipes_configs_names_a_registered_recipe():
    from pathlib import Path

    import recipes
    from medclip.recipe_registry import config_recipe_name

    on_disk = sorted((Path(recipes.__file__).parent / "configs").glob("*.yaml"))
    assert on_disk
    for path in on_disk:
        assert config_recipe_name(path) in RECIPES.names(), f"{path.name}: first line must be '# recipe: <command>'"
    claimed = sorted(path.name for _, recipe in RECIPES.items() for path in bundled_configs(recipe))
    assert claimed == [path.name for path in on_disk]


@pytest.mark.parametrize(
    "recipe_name,path",
    [(name, path) for name, recipe in RECIPES.items() for path in bundled_configs(recipe)],
    ids=lambda value: getattr(value, "name", value),
)
def test_every_shipped_config_is_valid(recipe_name, path):
    """Each bundled YAML builds against its recipe's Config; training configs also build their modalities and loss."""
    from medclip.losses import build_loss
    from recipes.pretrain import Config as PretrainConfig

    recipe = RECIPES.get(recipe_name)
    loaded = config.load(recipe.Config, path)
    experiment = getattr(loaded, "pretrain", loaded)
    if isinstance(experiment, PretrainConfig):
        assert build_modalities(experiment.modalities)
        assert build_loss(experiment.loss)


def test_pretrain_and_resume_from_the_cli(pbmc_manifest, tmp_path, capsys):
    """`medclip pretrain --config ... key=value --out DIR`, then `--resume`, on a real-format manifest."""
    from tests.conftest import SMALL_EXPERIMENT

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"modalities": {"expression": {}, "report": {}}}))
    out = tmp_path / "out"
    # Overrides both before and after the options, as users type them.
    base = ["pretrain", f"data.manifest={pbmc_manifest}", "--config", str(path), "--out", str(out), *SMALL_EXPERIMENT]
    assert main([*base, "train.steps=4", "train.stop_at=2"]) == 0
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 2
    assert main([*base, "train.steps=4", "--resume", str(out / "checkpoint")]) == 0
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["loss"] > 0 and metrics["data"]["skipped_rows"] == 0
    assert (out / "training_curve.png").stat().st_size > 1000
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records if "loss" in record] == [1, 2, 3, 4]  # steps 3, 4 appended once
    assert [record["step"] for record in records if "val/mean_R@1" in record] == [2, 4]  # validated at each stop
