"""The bundled LiT config (text tower locked): it builds a model whose pretrained text encoder is frozen and in eval
mode while the CT encoder trains; a missing text-encoder directory and bad fine-tuning options end with a named
error from the command line, never a traceback, and leave no checkpoint behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import recipes
from medclip import config
from medclip.cli import main
from medclip.factory import build_modalities, build_model
from medclip.train.optim import parameter_counts
from recipes.pretrain import Config as PretrainConfig
from tests.conftest import SMALL_EXPERIMENT
from tests.medclip.nn.builtin_encoders import tiny_hf_model

LIT = Path(recipes.__file__).parent / "configs" / "lit_report_frozen.yaml"


def test_lit_config_locks_the_text_tower_and_trains_the_ct_tower(tmp_path):
    folder = tiny_hf_model(tmp_path / "text_encoder")
    cfg = config.load(PretrainConfig, LIT, [f"modalities.report.hf_model={folder}", "modalities.ct.size=[32,32,32]"])
    assert cfg.modalities["report"]["freeze"] is True
    modalities = build_modalities(cfg.modalities)
    modalities["report"].fit(modalities["report"].synthetic(2))  # records the local model; nothing to learn
    model = build_model(cfg.model, modalities)
    assert not any(parameter.requires_grad for parameter in model.encoders["report"].parameters())
    assert all(parameter.requires_grad for parameter in model.encoders["ct"].parameters())
    assert all(parameter.requires_grad for parameter in model.heads["report"].parameters())
    model.train()
    assert not any(module.training for module in model.encoders["report"].modules())  # no dropout in the locked BERT
    assert model.encoders["ct"].training
    counts = parameter_counts(model)
    head = sum(parameter.numel() for parameter in model.heads["report"].parameters())
    assert counts["parameters/report/trainable"] == head and counts["parameters/report/frozen"] > 0
    assert counts["parameters/ct/frozen"] == 0


def _run(tmp_path: Path, manifest: Path, report: dict, capsys) -> tuple[int, str]:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"modalities": {"expression": {}, "report": report}}))
    out = tmp_path / "out"
    code = main(["pretrain", "--config", str(path), "--out", str(out), f"data.manifest={manifest}", *SMALL_EXPERIMENT])
    assert not (out / "checkpoint").exists()
    return code, capsys.readouterr().err


def test_missing_text_encoder_directory_is_a_named_error(pbmc_manifest, tmp_path, capsys):
    code, error = _run(
        tmp_path, pbmc_manifest, {"encoder": "hf", "hf_model": str(tmp_path / "absent"), "freeze": True}, capsys
    )
    assert code == 2 and "Traceback" not in error
    assert "cannot load the" in error and "hf_model" in error and "never downloads" in error


@pytest.mark.parametrize(
    "report,named",
    [
        ({"lora": {"targets": ["q_lin"]}}, "modalities.report.lora.targets: 'q_lin' matches no linear"),
        ({"freeze": ["blocks.layer.0"]}, "modalities.report.freeze: 'blocks.layer.0' is not a module"),
        ({"lora": {"r": 0}}, "lora.r must be >= 1"),
    ],
)
def test_bad_fine_tuning_options_are_named_errors(pbmc_manifest, tmp_path, capsys, report, named):
    code, error = _run(tmp_path, pbmc_manifest, report, capsys)
    assert code == 2 and "Traceback" not in error and named in error
