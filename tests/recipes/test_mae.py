"""``medclip mae`` end to end on real-format volumes (NIfTI and DICOM phantoms written by nibabel and pydicom): the
reconstruction loss falls, the encoder weights load strictly into the encoder pretraining builds, an interrupted run
resumes exactly, and the command line runs with overrides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import medclip
from medclip import config
from medclip.checkpoint import CheckpointError, ModelCard, read_card, save_model
from medclip.cli import main as cli_main
from medclip.config import ConfigError
from medclip.factory import build_modalities, build_model, create_model
from modalities.oct.synthetic import synthetic_oct_volume
from modalities.volume.mae import build_masked_autoencoder
from recipes import mae
from recipes.pretrain import Config as PretrainConfig
from tests.recipes.mae_data import CT_OPTIONS, FAKE_IDENTIFIERS, mae_config, write_volume_manifest

TRAIN_STEPS = 30

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: a second thread only adds contention


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_volume_manifest(tmp_path_factory.mktemp("mae_volumes"))


@pytest.fixture(scope="module")
def trained(one_thread, manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("mae_run")
    return mae.run_mae(mae_config(manifest, out, f"train.steps={TRAIN_STEPS}")), out


@pytest.mark.slow
def test_reconstruction_loss_falls_on_nifti_and_dicom_volumes(trained):
    result, out = trained
    losses = [record["mae_loss"] for record in _log(out)]
    assert len(losses) == TRAIN_STEPS and result.finished
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.7 * first, (first, last)
    assert result.summary["skipped_rows"] == 0  # both formats were read
    assert result.metrics["val_volumes"] == 2 and np.isfinite(result.metrics["val_mae_loss"])


@pytest.mark.slow
def test_encoder_weights_load_strictly_into_pretraining(trained):
    result, out = trained
    card = read_card(result.checkpoint)
    assert card.training["recipe"] == "mae" and card.training["steps_done"] == TRAIN_STEPS
    with pytest.raises(CheckpointError, match="pre-stage encoder .* train.init_from="):
        medclip.load_model(result.checkpoint)  # an encoder without heads is not an embedding model
    checkpoint = load_file(str(result.checkpoint / "model.safetensors"))
    exported = load_file(str(out / "ct_encoder.safetensors"))
    assert result.encoder_weights == out / "ct_encoder.safetensors"
    # The file is exactly the checkpoint's model.encoders.ct.* weights, without the prefix.
    assert {f"model.encoders.ct.{key}" for key in exported} == {
        k for k in checkpoint if k.startswith("model.encoders.ct.")
    }
    for key, value in exported.items():
        assert torch.equal(value, checkpoint[f"model.encoders.ct.{key}"]), key
    # ... and loads with no missing or unexpected key into the encoder recipes/pretrain.py builds for these options.
    pretrain_config = config.build(PretrainConfig, {"modalities": {"ct": card.modalities["ct"], "report": {}}})
    model = build_model(pretrain_config.model, build_modalities(pretrain_config.modalities))
    loaded = model.encoders["ct"].load_state_dict(exported, strict=True)
    assert not loaded.missing_keys and not loaded.unexpected_keys
    assert torch.equal(
        model.encoders["ct"].patch_embedding.position_embeddings, exported["patch_embedding.position_embeddings"]
    )


@pytest.mark.slow
def test_run_writes_figures_and_no_identifier(trained):
    _, out = trained
    for name, minimum_height in (("reconstructions.png", 1000), ("training_curve.png", 200)):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.height >= minimum_height, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"] and "val_mae_loss" in metrics["train"]
    for path in out.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(text.encode() in content for text in FAKE_IDENTIFIERS), path.name


@pytest.mark.slow
def test_an_interrupted_run_resumes_exactly(manifest, tmp_path):
    """4 steps straight == 2 steps, stop, resume to 4: same weights, the same masks and augmentations included."""
    common = ["train.steps=4", "val_volumes=0", "figure_volumes=0", "modalities.ct.augment=true"]
    straight = mae.run_mae(mae_config(manifest, tmp_path / "straight", *common))
    stopped = mae.run_mae(mae_config(manifest, tmp_path / "interrupted", *common, "train.stop_at=2"))
    assert json.loads((stopped.checkpoint / "trainer_state.json").read_text())["step"] == 2
    halfway = load_file(str(stopped.checkpoint / "model.safetensors"))
    resumed = mae.run_mae(mae_config(manifest, tmp_path / "interrupted", *common, "train.resume=auto"))
    a = load_file(str(straight.checkpoint / "model.safetensors"))
    b = load_file(str(resumed.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys() and int(b["model.mask_draws"]) == 4
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(halfway["model.decoder.head.weight"], b["model.decoder.head.weight"])  # it trained on
    assert [r["mae_loss"] for r in _log(tmp_path / "straight")] == [
        r["mae_loss"] for r in _log(tmp_path / "interrupted")
    ]


@pytest.mark.slow
def test_command_line_end_to_end(manifest, tmp_path, capsys):
    path = tmp_path / "mae.yaml"
    path.write_text(yaml.safe_dump({"modalities": {"ct": CT_OPTIONS}, "data": {"manifest": str(manifest)}}))
    out = tmp_path / "run"
    overrides = [
        "train.steps=2",
        "train.batch_size=2",
        "train.progress=false",
        "mae.mask_ratio=0.9",
        "figure_volumes=1",
    ]
    assert cli_main(["mae", "--config", str(path), "--out", str(out), *overrides]) == 0
    printed = capsys.readouterr().out
    assert "ct_encoder.safetensors" in printed
    metrics = json.loads(printed[printed.index("{") :])
    assert np.isfinite(metrics["mae_loss"]) and metrics["val_volumes"] == 2
    card = read_card(out / "checkpoint")
    assert card.training["mae"]["mask_ratio"] == 0.9 and card.modalities["ct"] == CT_OPTIONS
    assert (out / "ct_encoder.safetensors").is_file() and (out / "reconstructions.png").is_file()


def test_bundled_config_matches_the_ct_pretraining_config():
    """The shipped MAE config trains the very encoder the shipped CT <-> report config pretrains."""
    configs = Path(mae.__file__).parent / "configs"
    loaded = config.load(mae.Config, configs / "ct_mae.yaml")
    pretraining = config.load(PretrainConfig, configs / "ct_report_pretrain.yaml")
    assert loaded.modalities["ct"] == pretraining.modalities["ct"]
    plugin = build_modalities(loaded.modalities)["ct"]
    model = build_masked_autoencoder(plugin, loaded.mae, seed=loaded.train.seed)
    assert (model.grid.patches, model.visible) == (48, 12)


def test_settings_mae_cannot_run_with_are_refused(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("patient_id,ct\n")
    two = mae_config(manifest, tmp_path / "a")
    two.modalities["oct"] = {}
    with pytest.raises(ConfigError, match="exactly one modality"):
        mae.run_mae(two)
    with pytest.raises(ConfigError, match="GradCache"):
        mae.run_mae(mae_config(manifest, tmp_path / "b", "train.grad_cache_chunk=2"))
    with pytest.raises(ConfigError, match="data.manifest is empty"):
        mae.run_mae(mae_config(manifest, tmp_path / "c", "data.manifest="))
    # A contrastive checkpoint is not an MAE run to continue (its encoder is what train.init_from is for) ...
    options = {"ct": dict(CT_OPTIONS)}
    modalities = build_modalities(options)
    card = ModelCard(modalities=options, training={"recipe": "pretrain"})
    pretrained = save_model(tmp_path / "pretrained", create_model(options), modalities, card)
    with pytest.raises(ConfigError, match="written by `medclip pretrain`"):
        mae.run_mae(mae_config(manifest, tmp_path / "d", f"train.resume={pretrained}"))
    # ... and an MAE run continues only with its own settings.
    other = mae_config(manifest, tmp_path / "e", "mae.mask_ratio=0.5")
    autoencoder = build_masked_autoencoder(modalities["ct"], other.mae)
    earlier = save_model(tmp_path / "earlier", autoencoder, modalities, mae.model_card(other))
    with pytest.raises(ConfigError, match="differ"):
        mae.run_mae(mae_config(manifest, tmp_path / "f", f"train.resume={earlier}"))


@pytest.mark.slow
def test_oct_tiff_stacks_end_to_end(tmp_path):
    """The recipe on retinal OCT (multi-page TIFF, one page per B-scan): oct_encoder.safetensors fits pretraining."""
    rows = ["patient_id,split,oct"]
    for index in range(6):
        volume = synthetic_oct_volume(index, shape=(32, 48, 8))  # (lateral, axial, B-scans)
        tifffile.imwrite(tmp_path / f"scan_{index}.tif", volume.transpose(2, 1, 0))
        rows.append(f"eye-{index},{'val' if index == 5 else 'train'},scan_{index}.tif")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    options = {"bscan_size": [32, 32], "n_bscans": 16, "patch_size": [8, 8, 8], "augment": False}
    data = {"modalities": {"oct": options}, "data": {"manifest": str(tmp_path / "manifest.csv")}}
    overrides = ["train.steps=3", "train.batch_size=2", "train.progress=false", f"out={tmp_path / 'run'}"]
    result = mae.run_mae(config.build(mae.Config, config.apply_overrides(data, overrides)))
    assert result.finished and result.metrics["val_volumes"] == 1
    pretrain_config = config.build(PretrainConfig, {"modalities": {"oct": options, "report": {}}})
    model = build_model(pretrain_config.model, build_modalities(pretrain_config.modalities))
    model.encoders["oct"].load_state_dict(load_file(str(tmp_path / "run" / "oct_encoder.safetensors")), strict=True)
    assert (tmp_path / "run" / "reconstructions.png").is_file()
