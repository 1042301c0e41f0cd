"""`medclip recipes copy` by recipe or by a bundled config's file name, and its errors listing what exists."""

from __future__ import annotations

import yaml

from medclip.cli import main


def test_copy_a_bundled_config_by_its_file_name(tmp_path, capsys):
    destination = tmp_path / "ct.yaml"
    assert main(["recipes", "copy", "ct_report_pretrain.yaml", str(destination)]) == 0
    assert "ct" in yaml.safe_load(destination.read_text())["modalities"]
    assert "copied ct_report_pretrain.yaml" in capsys.readouterr().out


def test_copy_with_file_of_its_recipe(tmp_path):
    destination = tmp_path / "ecg.yaml"
    assert main(["recipes", "copy", "pretrain", str(destination), "--file", "ecg_report_pretrain.yaml"]) == 0
    assert "ecg" in yaml.safe_load(destination.read_text())["modalities"]


def test_an_unknown_config_lists_the_recipe_s_configs(tmp_path, capsys):
    assert main(["recipes", "copy", "pretrain", str(tmp_path / "x.yaml"), "--file", "nope.yaml"]) == 2
    error = capsys.readouterr().err
    assert "ct_report_pretrain.yaml" in error and "spatial_pretrain.yaml" in error
    assert main(["recipes", "copy", "pretrian", str(tmp_path / "x.yaml")]) == 2
    assert "unknown recipe 'pretrian'" in capsys.readouterr().err
