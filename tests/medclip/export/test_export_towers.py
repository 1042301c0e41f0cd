"""``medclip export``: every built-in modality tower in every format, with a dynamic batch (and length where the
modality's inputs vary), checked against the eager model; the JSON sidecar describes inputs, outputs and the
preprocessing; ONNX is run with onnxruntime on real texts of other lengths than the export's example."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import medclip
from medclip.cli import main
from medclip.export import EXPORTERS, export_tower, list_exporters
from medclip.factory import ModelConfig, build_modalities, build_model

# Small encoders: the test is about the export path, not the model size.
SMALL_OPTIONS = {
    "report": {"width": 32, "layers": 1, "heads": 2, "max_tokens": 48, "vocab_size": 200},
    "expression": {"encoder": "mlp", "width": 32},
    "ecg": {"width": 16},
    "wsi": {"width": 32},
}
# Where an exporter cannot capture an encoder, and why (docs/export.md lists the same).
CANNOT_EXPORT = {
    ("wsi", "exported-program"): "the WSI encoder runs its patch encoder on the real patches only (boolean-mask "
    "indexing: a data-dependent shape), which torch.export cannot capture; use torchscript",
    ("wsi", "onnx"): "ONNX export captures the graph with torch.export (see exported-program); use torchscript",
}


def fitted_model(name: str):
    """A small untrained model of one modality with its data-dependent preprocessing fitted on synthetic data."""
    plugins = build_modalities({name: SMALL_OPTIONS.get(name, {})})
    if plugins[name].fits_on_data:
        plugins[name].fit(plugins[name].synthetic(8))
    return build_model(ModelConfig(embed_dim=16), plugins)


def test_the_formats_are_registered():
    assert list_exporters() == ["exported-program", "onnx", "torchscript"]


def test_cli_export_of_a_checkpoint_tower_and_its_sidecar(tiny_checkpoint, pbmc_manifest, tmp_path, capsys):
    out = tmp_path / "served"
    args = ["export", str(tiny_checkpoint), "--format", "torchscript", "--modality", "expression", "--out", str(out)]
    assert main(args) == 2  # synthetic gene names cannot fit the checkpoint's real gene vocabulary: real examples
    assert "--example" in capsys.readouterr().err
    cells = pbmc_manifest.parent / "pbmc68k_reduced.h5ad"
    assert main([*args, "--example", f"{cells}#row=0", "--example", f"{cells}#row=5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"].endswith("expression.torchscript.pt")
    sidecar = json.loads((out / "expression.json").read_text())
    assert sidecar["modality"] == "expression" and sidecar["export_format"] == "torchscript"
    (only_input,) = sidecar["inputs"]
    assert only_input["name"] == "expression" and only_input["dtype"] == "float32"
    assert only_input["shape"][0] == "batch" and only_input["dynamic_axes"] == {"0": "batch"}
    assert [output["name"] for output in sidecar["outputs"]] == ["pooled_embedding", "token_embeddings", "token_mask"]
    saved = json.loads((tiny_checkpoint / "preprocess.json").read_text())["modalities"]["expression"]
    assert sidecar["preprocessing"]["state"] == saved  # the gene vocabulary and settings, as the checkpoint has them
    assert sidecar["check"]["batch_size"] == 3 and sidecar["check"]["max_abs_difference"]["pooled_embedding"] < 1e-4
    assert str(tiny_checkpoint) not in json.dumps(sidecar) and "pbmc68k" not in json.dumps(sidecar)  # no path


def test_an_unknown_format_or_modality_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    args = ["export", str(tiny_checkpoint), "--format", "tflite", "--modality", "report", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    with pytest.raises(KeyError, match="no modality 'ct'"):
        export_tower(tiny_checkpoint, "ct", "torchscript", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("export_format", sorted(EXPORTERS.names()))
@pytest.mark.parametrize("modality", medclip.list_modalities())
def test_every_modality_tower_exports_and_matches_the_eager_model(modality, export_format, tmp_path):
    if (modality, export_format) in CANNOT_EXPORT:
        pytest.skip(CANNOT_EXPORT[(modality, export_format)])
    if export_format == "onnx":
        pytest.importorskip("onnxruntime", reason="optional extra medclip[export]")
    torch.manual_seed(0)
    result = export_tower(fitted_model(modality), modality, export_format, tmp_path)
    assert result.model.is_file() and result.model.stat().st_size > 1000
    differences = result.check["max_abs_difference"]
    assert differences["pooled_embedding"] < 1e-4, differences
    sidecar = json.loads(result.sidecar.read_text())
    assert all(item["dynamic_axes"]["0"] == "batch" for item in sidecar["inputs"])


@pytest.mark.slow
def test_onnx_report_tower_serves_the_model_s_embeddings(tiny_checkpoint, tmp_path):
    """onnxruntime on texts of other lengths and another batch size gives model.encode's vectors."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="optional extra medclip[export]")
    result = export_tower(tiny_checkpoint, "report", "onnx", tmp_path)
    sidecar = json.loads(result.sidecar.read_text())
    assert [item["name"] for item in sidecar["inputs"]] == ["input_ids", "attention_mask", "sentence_ids"]
    assert all(item["dynamic_axes"] == {"0": "batch", "1": "tokens"} for item in sidecar["inputs"])
    assert sidecar["check"]["shorter_inputs"]["max_abs_difference"]["pooled_embedding"] < 1e-4
    model = medclip.load_model(tiny_checkpoint)
    texts = ["a B lymphocyte.", "a natural killer cell. CD56 bright.", "a monocyte.", "a T cell.", "a platelet."]
    batch = model.tokenizer(texts)
    session = onnxruntime.InferenceSession(str(result.model), providers=["CPUExecutionProvider"])
    feed = {name: tensor.numpy() for name, tensor in batch["report"].items()}
    served = session.run(["pooled_embedding"], feed)[0]
    with torch.no_grad():
        eager = model.encode("report", batch).numpy()
    np.testing.assert_allclose(served, eager, atol=1e-4)
