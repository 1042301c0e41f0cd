"""``train.init_from``: a new run starts its towers (encoder, head, learned vocabulary) from a medclip checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

import medclip
from medclip.checkpoint import MODEL_FILE, PREPROCESS_FILE, read_card
from medclip.weights.init_from import init_from_checkpoint, open_init_source
from medclip.weights.strict import WeightsError
from recipes.pretrain import pretrain
from tests.helpers import checkpoint_weights

CT = {"size": [32, 32, 32], "hu_windows": ["lung"]}


def _preprocess(checkpoint) -> dict:
    return json.loads((checkpoint / PREPROCESS_FILE).read_text())["modalities"]


@pytest.fixture(scope="module")
def first_run(pbmc_manifest, tmp_path_factory):
    """A finished pretraining run (expression + report) whose checkpoint later runs start from."""
    from medclip import config
    from recipes.pretrain import Config
    from tests.conftest import SMALL_EXPERIMENT

    out = tmp_path_factory.mktemp("first")
    data = {"modalities": {"expression": {}, "report": {}}}
    overrides = [*SMALL_EXPERIMENT, f"data.manifest={pbmc_manifest}", f"out={out}", "train.steps=3"]
    return pretrain(config.build(Config, config.apply_overrides(data, overrides))).checkpoint


def test_every_shared_tower_starts_from_the_checkpoint_with_its_vocabulary(first_run, small_experiment, tmp_path):
    # lr=0: the run's weights stay where they started, so its checkpoint shows exactly what init_from loaded.
    # lowercase=false would fit another report tokenizer: the checkpoint's must be restored instead.
    run = pretrain(
        small_experiment(
            f"train.init_from={first_run}", "train.lr=0", "train.steps=1", "modalities.report.lowercase=false"
        )
    )
    start, ours = checkpoint_weights(first_run), checkpoint_weights(run.checkpoint)
    towers = [key for key in start if key.startswith(("model.encoders.", "model.heads."))]
    assert towers and all(torch.equal(start[key], ours[key]) for key in towers)
    assert not torch.equal(start["model.log_logit_scale"], ours["model.log_logit_scale"])  # not asked for
    assert _preprocess(run.checkpoint)["report"]["tokenizer"] == _preprocess(first_run)["report"]["tokenizer"]
    assert _preprocess(run.checkpoint)["expression"]["vocabulary"] == _preprocess(first_run)["expression"]["vocabulary"]
    record = read_card(run.checkpoint).training["init_from"]
    assert record["towers"]["report"]["head"] == "loaded" and set(record["towers"]) == {"expression", "report"}
    assert len(record["model_sha256"]) == 64 and str(first_run) not in json.dumps(record)  # a fingerprint, no path

    only = pretrain(
        small_experiment(
            f"train.init_from={first_run}",
            "train.init_modalities=[expression]",
            "train.init_logit_scale=true",
            "train.init_heads=false",
            "train.lr=0",
            "train.steps=1",
            out=tmp_path / "only",
        )
    )
    picked = checkpoint_weights(only.checkpoint)
    assert all(torch.equal(start[k], picked[k]) for k in start if k.startswith("model.encoders.expression."))
    assert not torch.equal(start["model.heads.expression.net.weight"], picked["model.heads.expression.net.weight"])
    assert not torch.equal(
        start["model.encoders.report.token_embedding.weight"], picked["model.encoders.report.token_embedding.weight"]
    )
    assert torch.equal(start["model.log_logit_scale"], picked["model.log_logit_scale"])


def test_a_resumed_run_continues_from_its_own_checkpoint(first_run, small_experiment, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(first_run, source)
    stopped = pretrain(small_experiment(f"train.init_from={source}", "train.steps=3", "train.stop_at=1"))
    shutil.rmtree(source)  # init_from is gone: a resume must not need it
    resumed = pretrain(
        small_experiment(f"train.init_from={source}", "train.steps=3", f"train.resume={stopped.checkpoint}")
    )
    assert json.loads((resumed.checkpoint / "trainer_state.json").read_text())["step"] == 3
    assert read_card(resumed.checkpoint).training["init_from"] == read_card(stopped.checkpoint).training["init_from"]


def test_a_masked_modelling_checkpoint_gives_its_encoder_and_keeps_the_new_head(tmp_path):
    torch.manual_seed(0)
    pre_stage = medclip.create_model({"ct": CT}, {"embed_dim": 8})
    folder = tmp_path / "mae"
    folder.mkdir()
    tensors = {f"model.encoders.ct.{k}": v.contiguous() for k, v in pre_stage.encoders["ct"].state_dict().items()}
    tensors["model.decoder.mask_token"] = torch.zeros(1, 1, 32)  # the pre-stage's own parts are not towers
    save_file(tensors, str(folder / MODEL_FILE))
    torch.manual_seed(1)
    model = medclip.create_model({"ct": CT}, {"embed_dim": 8})
    head_before = model.heads["ct"].net.weight.clone()
    source = open_init_source(folder, ["ct"], [])
    assert source.towers == ["ct"]
    record = init_from_checkpoint(model, source)
    assert all(
        torch.equal(v, pre_stage.encoders["ct"].state_dict()[k]) for k, v in model.encoders["ct"].state_dict().items()
    )
    assert torch.equal(model.heads["ct"].net.weight, head_before)
    assert record["towers"]["ct"] == {"encoder_tensors": len(tensors) - 1, "head": "kept new (the checkpoint has none)"}

    wider = medclip.create_model({"ct": {**CT, "width": 32, "heads": 2}}, {"embed_dim": 8})
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(
        WeightsError,
        match=r"ct encoder: 33 of another shape \(blocks.0.attn.out_proj.bias: file \[64\] vs encoder \[32\]",
    ):
        init_from_checkpoint(wider, source)
    assert all(torch.equal(v, before[k]) for k, v in wider.state_dict().items())  # nothing half-loaded


def test_bad_init_from_is_refused_by_name(first_run, small_experiment, tmp_path):
    with pytest.raises(WeightsError, match="has no ct encoder; it has expression, report"):
        open_init_source(first_run, ["expression", "report", "ct"], ["ct"])
    with pytest.raises(WeightsError, match="share none"):
        open_init_source(first_run, ["ct"], [])
    pickled = tmp_path / "release.pth"
    torch.save({"weight": torch.ones(1)}, pickled)
    with pytest.raises(WeightsError, match="never unpickles.*medclip convert-weights"):
        open_init_source(pickled, ["report"], [])
    weights = tmp_path / "report.safetensors"
    save_file({"x": torch.ones(1)}, str(weights))
    with pytest.raises(WeightsError, match="report name weights: and are also taken from train.init_from"):
        pretrain(small_experiment(f"train.init_from={first_run}", f"modalities.report.weights={weights}"))
    assert not (tmp_path / "run").exists()  # refused before any data was read or written


def test_the_command_line_runs_a_warm_start_and_names_refused_weights(first_run, pbmc_manifest, tmp_path, capsys):
    from medclip.cli import main as cli_main
    from tests.conftest import SMALL_EXPERIMENT

    config = tmp_path / "pretrain.yaml"
    config.write_text("modalities:\n  expression: {}\n  report: {}\n")
    common = ["pretrain", "--config", str(config), *SMALL_EXPERIMENT, f"data.manifest={pbmc_manifest}"]
    code = cli_main([*common, "train.steps=1", f"train.init_from={first_run}", "--out", str(tmp_path / "warm")])
    assert code == 0
    assert set(read_card(tmp_path / "warm" / "checkpoint").training["init_from"]["towers"]) == {"expression", "report"}

    pickled = tmp_path / "report_encoder.pt"
    torch.save({"token_embedding.weight": torch.zeros(200, 32)}, pickled)
    capsys.readouterr()
    code = cli_main([*common, f"modalities.report.weights={pickled}", "--out", str(tmp_path / "refused")])
    error = capsys.readouterr().err
    assert code == 2 and "modalities.report.weights: report_encoder.pt is a pickle-based file" in error
    assert "medclip convert-weights" in error and "Traceback" not in error
    assert not (tmp_path / "refused").exists()


def test_lora_and_freezing_adapt_the_towers_that_init_from_loaded(first_run, small_experiment, tmp_path):
    """Adapters are added to the loaded tower, not to a random one the checkpoint then fails to fit: LoRA's B starts
    at zero, so with lr=0 the tuned model holds the checkpoint's weights and its adapters stay zero."""
    run = pretrain(
        small_experiment(
            f"train.init_from={first_run}",
            "modalities.report.lora={r: 2}",
            "modalities.expression.freeze=true",
            "train.lr=0",
            "train.steps=1",
            out=tmp_path / "tuned",
        )
    )
    start, ours = checkpoint_weights(first_run), checkpoint_weights(run.checkpoint)
    adapters = [key for key in ours if key.endswith("lora_B")]
    assert adapters and all(torch.count_nonzero(ours[key]) == 0 for key in adapters)
    plain = {key.replace(".parametrizations.", ".").replace(".original", "").replace(".base.", "."): value
             for key, value in ours.items() if "lora_" not in key}  # fmt: skip
    towers = [key for key in start if key.startswith(("model.encoders.", "model.heads."))]
    assert all(torch.equal(start[key], plain[key]) for key in towers)
    model = medclip.load_model(run.checkpoint)
    assert not any(p.requires_grad for p in model.encoders["expression"].parameters())
