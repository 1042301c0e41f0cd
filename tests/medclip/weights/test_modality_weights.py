"""Per-modality ``weights:``: strict, all or nothing, never pickle, applied to new models only."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import medclip
from medclip.checkpoint import save_model
from medclip.factory import build_modalities, build_model
from medclip.weights.strict import WeightsError
from medclip.weights.warm_start import apply_modality_weights
from tests.medclip.weights.test_safe_loading import malicious_files

pytestmark = pytest.mark.usefixtures("one_thread")

CT = {"size": [32, 32, 32], "hu_windows": ["lung"]}  # tiny ViT, 8 patch tokens
REPORT = {"width": 16, "layers": 1, "heads": 2, "max_tokens": 16, "vocab_size": 50}


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _save(state: dict[str, torch.Tensor], path) -> str:
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def source_encoders():
    """Encoders of a first model whose weights the tests warm-start from."""
    torch.manual_seed(1)
    model = medclip.create_model({"ct": CT, "report": REPORT}, {"embed_dim": 8})
    return {name: _state(model.encoders[name]) for name in ("ct", "report")}


def test_weights_fill_every_encoder_they_name_and_the_card_gets_a_fingerprint(source_encoders, tmp_path):
    file = _save(source_encoders["ct"], tmp_path / "ct.safetensors")
    torch.manual_seed(2)
    model = medclip.create_model({"ct": {**CT, "weights": file}, "report": REPORT}, {"embed_dim": 8})
    for key, value in model.encoders["ct"].state_dict().items():
        assert torch.equal(value, source_encoders["ct"][key]), key
    assert not torch.equal(
        model.encoders["report"].token_embedding.weight, source_encoders["report"]["token_embedding.weight"]
    )
    record = model.warm_start["ct"]
    assert record["tensors"] == len(source_encoders["ct"]) and record["scope"] == "encoder"
    assert record["sha256"] == hashlib.sha256(open(file, "rb").read()).hexdigest()
    assert record["file"] == "ct.safetensors" and "report" not in model.warm_start

    # a folder: model.safetensors, or Hugging Face's sharded layout with its index
    folder = tmp_path / "release"
    folder.mkdir()
    keys = sorted(source_encoders["ct"])
    halves = {"part-1.safetensors": keys[: len(keys) // 2], "part-2.safetensors": keys[len(keys) // 2 :]}
    for name, part in halves.items():
        _save({key: source_encoders["ct"][key] for key in part}, folder / name)
    index = {"weight_map": {key: name for name, part in halves.items() for key in part}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    sharded = medclip.create_model({"ct": {**CT, "weights": str(folder)}}, {"embed_dim": 8})
    assert all(torch.equal(v, source_encoders["ct"][k]) for k, v in sharded.encoders["ct"].state_dict().items())


def test_weights_that_do_not_fit_are_named_and_nothing_is_loaded(source_encoders, tmp_path):
    ct_file = _save(source_encoders["ct"], tmp_path / "ct.safetensors")
    report = dict(source_encoders["report"])
    report["blocks.layers.0.linear9.weight"] = report.pop("blocks.layers.0.linear1.weight")  # renamed
    report["token_embedding.weight"] = torch.zeros(60, 16)  # another vocabulary size
    report_file = _save(report, tmp_path / "report.safetensors")
    modalities = build_modalities({"ct": {**CT, "weights": ct_file}, "report": {**REPORT, "weights": report_file}})
    torch.manual_seed(3)
    encoders = {name: plugin.build_encoder() for name, plugin in modalities.items()}
    before = {name: _state(encoder) for name, encoder in encoders.items()}
    with pytest.raises(WeightsError) as caught:
        apply_modality_weights(encoders, modalities)
    message = str(caught.value)
    assert "nothing was loaded" in message and "modalities.report.weights (report.safetensors)" in message
    assert "1 missing (blocks.layers.0.linear1.weight)" in message
    assert "1 unexpected (blocks.layers.0.linear9.weight)" in message
    assert "token_embedding.weight: file [60, 16] vs encoder [50, 16]" in message
    assert "medclip convert-weights" in message  # a plain file: the hint names the converter
    assert "modalities.ct" not in message  # the ct file fitted ...
    for name, encoder in encoders.items():  # ... and still was not loaded: no encoder is half-loaded
        assert all(torch.equal(v, before[name][k]) for k, v in encoder.state_dict().items()), name

    broken = dict(source_encoders["ct"])
    broken["norm.weight"] = torch.full_like(broken["norm.weight"], float("nan"))
    with pytest.raises(WeightsError, match=r"1 with NaN or infinity \(norm.weight\)"):
        medclip.create_model({"ct": {**CT, "weights": _save(broken, tmp_path / "nan.safetensors")}})
    with pytest.raises(WeightsError, match="modalities.ct.weights: weights not found: absent.safetensors"):
        medclip.create_model({"ct": {**CT, "weights": str(tmp_path / "absent.safetensors")}})


def test_pickle_weights_are_refused_unopened_naming_convert_weights(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    for name, path in malicious_files(tmp_path, marker).items():
        with pytest.raises(WeightsError) as caught:
            medclip.create_model({"ct": {**CT, "weights": str(path)}})
        assert "medclip convert-weights" in str(caught.value) and "--from" in str(caught.value), name
    folder = tmp_path / "pickled_release"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes((tmp_path / "pytorch_model.bin").read_bytes())
    with pytest.raises(WeightsError, match="pickle-based.*medclip convert-weights"):
        medclip.create_model({"ct": {**CT, "weights": str(folder)}})
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated, and still what releases hold
def test_a_torchscript_archive_is_refused_without_being_loaded(tmp_path, monkeypatch):
    from medclip.checkpoint import CheckpointError
    from medclip.weights import convert_weights

    archive = tmp_path / "ViT-B-32.pt"  # OpenAI's original CLIP releases are TorchScript archives
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(archive))

    def never(*args, **kwargs):
        raise AssertionError("torch.load was called on a TorchScript archive")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(CheckpointError, match="TorchScript archive .* holds code"):
        convert_weights(archive, tmp_path / "out.safetensors", trust_pickle=True)


def test_a_loaded_checkpoint_keeps_its_own_weights_and_never_reads_the_file(source_encoders, tmp_path):
    file = tmp_path / "ct.safetensors"
    _save(source_encoders["ct"], file)
    modalities = build_modalities({"ct": {**CT, "weights": str(file)}})
    model = build_model(medclip.factory.ModelConfig(embed_dim=8), modalities, apply_weights=True)
    with torch.no_grad():
        for parameter in model.encoders["ct"].parameters():
            parameter.add_(1.0)  # "training" moved the weights away from the file's
    card = medclip.checkpoint.ModelCard(
        modalities={"ct": {**CT, "weights": str(file)}}, model=medclip.factory.ModelConfig(embed_dim=8)
    )
    checkpoint = save_model(tmp_path / "checkpoint", model, modalities, card)
    file.unlink()  # the machine that loads the checkpoint does not have the file
    loaded = medclip.load_model(checkpoint)
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert all(torch.equal(value, saved[f"model.{key}"]) for key, value in loaded.state_dict().items())
    assert loaded.warm_start == {}
