"""The image encoder: timm backbones with tokens, the backbone's own normalisation, channel-adaptive input, and
every registered loss on image <-> report batches."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import medclip
from medclip.losses import LOSSES, build_loss, list_losses
from medclip.model import ContrastiveModel, ProjectionHead

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "name,tokens",
    [("resnet18", 4), ("convnext_atto", 4), ("vit_tiny_patch16_224", 16), ("mobilenetv3_small_050", 4)],
)
def test_backbones_give_pooled_and_tokens(name, tokens):
    plugin = medclip.get_modality("image", {"encoder": name, "size": [64, 64]})
    encoder = plugin.build_encoder()
    assert encoder.timm_model_name == name and encoder.backbone.default_cfg["architecture"] == name.split(".")[0]
    output = encoder(torch.rand(2, 1, 64, 64, dtype=torch.float16))
    assert output.pooled.shape == (2, encoder.output_dim)
    assert output.tokens.shape == (2, tokens, encoder.output_dim)  # ViT: 4 x 4 patches, CNNs: a 2 x 2 map
    assert output.token_mask is None and torch.isfinite(output.tokens).all()
    assert not any(key.startswith("backbone.head.fc") or key.startswith("backbone.fc.") for key in encoder.state_dict())


def test_normalisation_follows_the_backbones_pretrained_config():
    import timm

    vit = medclip.get_modality("image", {"encoder": "vit_tiny_patch16_224", "size": [32, 32]}).build_encoder()
    expected = timm.get_pretrained_cfg("vit_tiny_patch16_224").mean
    assert vit.pixel_mean.flatten().tolist() == pytest.approx(list(expected))  # (0.5, 0.5, 0.5), not ImageNet's
    plugin = medclip.get_modality("image", {"size": [32, 32]})
    encoder = plugin.build_encoder().eval()
    gray = torch.rand(2, 1, 32, 32)
    rgb_plugin = medclip.get_modality("image", {"size": [32, 32], "image_type": "rgb"})
    rgb_encoder = rgb_plugin.build_encoder().eval()
    rgb_encoder.load_state_dict(encoder.state_dict())
    with torch.no_grad():  # a grayscale image is the RGB image with three equal channels
        assert torch.allclose(encoder(gray).pooled, rgb_encoder(gray.expand(-1, 3, -1, -1)).pooled, atol=1e-6)
    normalised = encoder.backbone_input(torch.full((1, 1, 4, 4), 0.485))
    assert torch.allclose(normalised[0, 0], torch.zeros(4, 4), atol=1e-6)  # ImageNet's red mean maps to 0


def test_channel_adaptive_encoder_accepts_any_subset_of_its_channels():
    channels = ["DNA", "ER", "RNA", "AGP", "Mito"]
    plugin = medclip.get_modality("image", {"image_type": "multichannel", "channels": channels, "size": [32, 32]})
    encoder = plugin.build_encoder().eval()
    pixels = torch.rand(3, 5, 32, 32)
    full = torch.ones(3, 5, dtype=torch.bool)
    subset = torch.tensor([[True, False, True, False, False]] * 3)
    with torch.no_grad():
        all_channels = encoder({"pixels": pixels, "channels": full}).pooled
        some = encoder({"pixels": pixels, "channels": subset}).pooled
        scrambled = pixels.clone()
        scrambled[:, [1, 3, 4]] = torch.rand(3, 3, 32, 32)  # content of absent channels must not matter
        same = encoder({"pixels": scrambled, "channels": subset}).pooled
    assert torch.isfinite(some).all() and not torch.allclose(all_channels, some)
    assert torch.allclose(some, same, atol=1e-6)
    batch = plugin.collate([plugin.transforms(train=False)(s) for s in plugin.synthetic(2)])
    assert batch["image"]["pixels"].shape == (2, 5, 32, 32) and batch["image"]["channels"].all()


def _batch(n: int = 6):
    image = medclip.get_modality("image", {"size": [32, 32], "encoder": "resnet18"})
    report = medclip.get_modality("report", {"width": 32, "layers": 1, "heads": 2, "max_tokens": 32, "vocab_size": 200})
    reports = report.synthetic(n)
    report.fit(iter(reports))
    images = [image.transforms(train=True)(s) for s in image.synthetic(n)]
    texts = [report.transforms(train=True)(s) for s in reports]
    samples = [{**a, **b} for a, b in zip(images, texts, strict=True)]
    batch = {**image.collate(samples), **report.collate(samples)}
    labels = torch.tensor([[1.0, 0.0], [0.0, float("nan")], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[:n]
    batch["labels"] = labels
    batch["patient_id"] = [f"p-{index // 2}" for index in range(n)]
    return image, report, batch


@pytest.mark.parametrize("loss_name", list_losses(consumes="embeddings"))
def test_every_loss_trains_the_image_encoder(loss_name):
    image, report, batch = _batch()
    encoders = {"image": image.build_encoder(), "report": report.build_encoder()}
    heads = {name: ProjectionHead(encoder.output_dim, 16) for name, encoder in encoders.items()}
    model = ContrastiveModel(encoders, heads)
    outputs = model(batch)
    assert outputs["tokens"]["image"].shape == (6, 1, 16)  # a 1 x 1 ResNet map at 32 px: one patch token
    fields = {field.name for field in dataclasses.fields(LOSSES.get(loss_name).config_class)}
    options = {"weight": 1.0, **({"embed_dim": 16} if "embed_dim" in fields else {})}  # prototypes live in D = 16
    teacher = {name: value.detach() for name, value in outputs["features"].items()}  # a frozen teacher (distill)
    loss = build_loss({loss_name: options})(**outputs, teacher_features=teacher)
    assert torch.isfinite(loss["loss"])
    loss["loss"].backward()
    gradients = [p.grad for p in encoders["image"].parameters() if p.grad is not None]
    assert gradients and any(float(g.abs().sum()) > 0 for g in gradients), loss_name
