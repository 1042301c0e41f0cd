"""``medclip convert-weights --from open_clip``: real open_clip models (random weights, created offline in the test),
saved in the formats releases use, mapped onto medclip encoders and checked output for output against open_clip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import medclip
from medclip.checkpoint import ModelCard, save_model
from medclip.cli import main as cli_main
from medclip.factory import ModelConfig, build_modalities, build_model
from medclip.weights.strict import WeightsError

open_clip = pytest.importorskip("open_clip")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
WSI = {"width": 16, "heads": 2, "patch_size": 224}


def _release(model: torch.nn.Module, folder, name: str) -> dict[str, object]:
    """The model saved as releases are: a training checkpoint (.pt: a wrapper with DDP's prefix) and safetensors."""
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    torch.save(
        {"epoch": 32, "name": name, "state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / f"{name}.pt"
    )
    save_file(state, str(folder / f"{name}.safetensors"))
    return {"pt": folder / f"{name}.pt", "safetensors": folder / f"{name}.safetensors"}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open_clip")
    torch.manual_seed(0)
    vit = open_clip.create_model("ViT-M-32", pretrained=None).eval()  # ViT-B/32 layout at width 512
    resnet = open_clip.create_model("RN50", pretrained=None).eval()  # the RN50
    return {"vit": (vit, _release(vit, folder, "vit")), "rn50": (resnet, _release(resnet, folder, "rn50"))}


def _convert(capsys, *arguments: str) -> tuple[int, dict, str]:
    code = cli_main(["convert-weights", *map(str, arguments)])
    captured = capsys.readouterr()
    printed = captured.out.split("set in your config:\n", 1)
    settings = __import__("yaml").safe_load(printed[1]) if len(printed) == 2 else {}
    return code, settings, captured.out + captured.err


def _metadata(path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def test_vit_visual_tower_becomes_the_wsi_patch_encoder(released, capsys, tmp_path):
    source, files = released["vit"]
    destination = tmp_path / "vit_wsi.safetensors"
    code, _, output = _convert(capsys, files["pt"], destination, "--from", "open_clip", "--to", "wsi")
    assert code == 2 and "--trust-pickle" in output and not destination.exists()  # a pickle needs explicit trust
    code, settings, output = _convert(
        capsys, files["pt"], destination, "--from", "open_clip", "--to", "wsi", "--trust-pickle"
    )
    assert code == 0, output
    options = settings["modalities"]["wsi"]
    assert options == {"patch_encoder": "vit_medium_patch32_clip_224", "weights": str(destination)}
    metadata = _metadata(destination)
    assert (
        metadata["medclip.scope"] == "patch_encoder.model"
        and json.loads(metadata["medclip.pixel_mean"]) == OPENAI_CLIP_MEAN
    )
    assert "dropped CLIP's image projection" in output

    model = medclip.create_model({"wsi": {**WSI, **options}}, {"embed_dim": 8}).eval()
    assert (
        model.warm_start["wsi"]["scope"] == "patch_encoder.model" and model.warm_start["wsi"]["source"] == "open_clip"
    )
    pixels = torch.rand(2, 3, 224, 224) * 4 - 2
    with torch.no_grad():
        expected = source.visual(pixels)  # CLIP's image embedding: ln_post(cls) @ proj
        ours = model.encoders["wsi"].patch_encoder(pixels) @ source.visual.proj
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    plugin = medclip.get_modality("wsi", {**WSI, **options})
    assert list(plugin.normalisation.mean) == OPENAI_CLIP_MEAN and plugin.normalisation.source == "weights"


def test_rn50_visual_tower_maps_key_for_key_where_a_loose_load_would_miss_every_tensor(released, capsys, tmp_path):
    source, files = released["rn50"]
    raw = medclip.get_modality("wsi", {**WSI, "patch_encoder": "resnet50_clip", "weights": str(files["safetensors"])})
    modalities = {"wsi": raw}
    with pytest.raises(WeightsError) as caught:  # the release as-is: named keys, a pointer to the converter
        build_model(ModelConfig(embed_dim=8), modalities, apply_weights=True)
    message = str(caught.value)
    assert "347 missing (patch_encoder.model." in message and "489 unexpected (ln_final.bias" in message, message
    assert "medclip convert-weights SOURCE DEST.safetensors --from FORMAT --to wsi" in message

    destination = tmp_path / "rn50_wsi.safetensors"
    code, settings, output = _convert(capsys, files["safetensors"], destination, "--from", "open_clip", "--to", "wsi")
    assert code == 0, output
    options = settings["modalities"]["wsi"]
    assert options["patch_encoder"] == "resnet50_clip"
    model = medclip.create_model({"wsi": {**WSI, **options}}, {"embed_dim": 8}).eval()
    pixels = torch.rand(2, 3, 224, 224) * 4 - 2
    projection = source.visual.attnpool.c_proj  # CLIP's last projection: dropped, medclip's head replaces it
    with torch.no_grad():
        expected = source.visual(pixels)
        ours = projection(model.encoders["wsi"].patch_encoder(pixels))
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_text_tower_becomes_a_clip_text_report_encoder_with_its_vocabulary(released, capsys, tmp_path):
    source, files = released["vit"]
    destination = tmp_path / "text.safetensors"
    code, settings, output = _convert(
        capsys, files["safetensors"], destination, "--from", "open_clip", "--to", "report"
    )
    assert code == 0, output
    options = settings["modalities"]["report"]
    assert options == {
        "encoder": "clip_text",
        "width": 512,
        "layers": 12,
        "heads": 8,
        "max_tokens": 77,
        "vocab_size": 49408,
        "weights": str(destination),
    }
    modalities = build_modalities({"report": options})
    texts = ["Small nodule in the right upper lobe. No pleural effusion.", "The lungs are CLEAR; nodule of 3.5 cm!"]
    samples = [modalities["report"].load(text) for text in texts]
    modalities["report"].fit(samples)  # nothing to learn: CLIP's vocabulary comes with the weights
    transform = modalities["report"].transforms(train=False)
    batch = modalities["report"].collate([transform(sample) for sample in samples])["report"]
    reference = open_clip.tokenize(texts)  # open_clip's own tokenizer, padded to 77
    for row in range(2):
        length = int(batch["attention_mask"][row].sum())
        assert torch.equal(batch["input_ids"][row, :length], reference[row, :length]), row
    model = build_model(ModelConfig(embed_dim=8), modalities, apply_weights=True).eval()
    with torch.no_grad():
        expected = source.encode_text(reference)  # ln_final(end-of-text state) @ text_projection
        ours = model.encoders["report"](batch).pooled @ source.text_projection
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)

    # the checkpoint keeps the vocabulary in preprocess.json: loading needs neither the weights file nor open_clip's
    card = ModelCard(modalities={"report": options}, model=ModelConfig(embed_dim=8))
    checkpoint = save_model(tmp_path / "checkpoint", model, modalities, card)
    destination.unlink()
    loaded = medclip.load_model(checkpoint)
    from medclip.embedding import embed

    torch.testing.assert_close(embed(loaded, "report", texts), embed(model, "report", texts))
