"""One full training step (forward + loss + backward + AdamW) of medclip's CT <-> report model and of open_clip's
ViT-B/16 CLIP, on the same device in the same run: samples/s and model FLOP utilisation (MFU).

    python benchmarks/train_step.py                 # GPU: CT 3D ViT-B + report transformer vs open_clip ViT-B/16, bf16
    python benchmarks/train_step.py --tiny          # CPU smoke run: tiny presets of both (same code paths)

FLOPs are counted once per model with ``torch.utils.flop_counter.FlopCounterMode`` over a whole step (matmuls,
convolutions and attention, forward and backward; the optimizer's element-wise work is not model FLOPs). MFU =
counted FLOPs per step x steps per second / the device's peak FLOP/s for the step's dtype: a table of dense bf16 peaks
for known GPUs, and on a CPU a peak measured here with a large matmul of the same dtype. Inputs are random tensors
already on the device: the figure is the model step, not data loading.

medclip's side is built from the real plugins (modalities.ct's 3D ViT, modalities.report's transformer) inside a
``ContrastiveModel`` with medclip's CLIP loss and optimizer; open_clip's side is ``open_clip.create_model("ViT-B-16",
pretrained=None)`` (no download) with ``open_clip.loss.ClipLoss``. With ``--tiny`` both are shrunk by config only.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, matched against torch.cuda.get_device_name() in this order.
GPU_BF16_PEAK = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("GH200", 989e12),
    ("A100", 312e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
]


@dataclass(frozen=True)
class Preset:
    """Sizes of both models; "full" is the issue's comparison, "tiny" a CPU smoke run of the same code."""

    ct_preset: str  # modalities.ct encoder preset: "base" = 3D ViT-B (768 wide, 12 blocks, 12 heads)
    ct_size: tuple[int, int, int]  # voxels; with 16^3 patches, full = 10 x 10 x 8 = 800 tokens
    report_width: int
    report_layers: int
    report_heads: int
    report_tokens: int
    ct_batch: int
    clip_batch: int
    clip_model: str  # open_clip model name, or "tiny" for a small CLIP built from open_clip's own config classes
    embed_dim: int


PRESETS = {
    "full": Preset("base", (160, 160, 128), 512, 12, 8, 128, 32, 256, "ViT-B-16", 512),
    "tiny": Preset("tiny", (32, 32, 32), 32, 1, 2, 16, 4, 4, "tiny", 16),
}


@dataclass
class Result:
    name: str
    samples_per_s: float
    flops_per_step: float
    mfu: float
    parameters: int


def device_peak(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """Peak FLOP/s of ``device`` for ``dtype`` and where the number comes from."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_BF16_PEAK:
            if key in name:
                if dtype != torch.bfloat16:
                    return peak, f"table (bf16 dense peak; this run is {dtype}, so MFU is understated)"
                return peak, "table (bf16 dense)"
        raise SystemExit(f"no peak FLOP/s known for {name!r}: add it to GPU_BF16_PEAK in {__file__}")
    return measured_matmul_peak(device, dtype), f"measured ({dtype} matmul)"


def measured_matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 1024, repeats: int = 10) -> float:
    """The best FLOP/s of a square matmul in ``dtype`` on ``device`` (the CPU's practical peak)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def build_medclip(preset: Preset, device: torch.device) -> tuple[nn.Module, nn.Module, Callable[[], dict]]:
    """ContrastiveModel(ct: 3D ViT, report: transformer) + medclip's CLIP loss, and a random-batch maker."""
    from medclip.losses import build_loss
    from medclip.model import ContrastiveModel, ProjectionHead
    from modalities.ct import CTConfig, CTModality
    from modalities.report.config import ReportConfig
    from modalities.report.encoder import TransformerReportEncoder

    ct_config = CTConfig(preset=preset.ct_preset, size=list(preset.ct_size))
    report_config = ReportConfig(
        width=preset.report_width,
        layers=preset.report_layers,
        heads=preset.report_heads,
        max_tokens=preset.report_tokens,
        vocab_size=4000,
    )
    encoders = {"ct": CTModality(ct_config).build_encoder(), "report": TransformerReportEncoder(report_config)}
    heads = {name: ProjectionHead(encoder.output_dim, preset.embed_dim) for name, encoder in encoders.items()}
    model = ContrastiveModel(encoders, heads).to(device)
    criterion = build_loss({"clip": 1.0}).to(device)
    channels = len(ct_config.hu_windows)
    batch_size, tokens = preset.ct_batch, preset.report_tokens

    def batch() -> dict:
        sentence_ids = (torch.arange(tokens, device=device) // 16).expand(batch_size, tokens)  # (B, T): 16 per sentence
        return {
            "ct": torch.rand(batch_size, channels, *preset.ct_size, device=device),  # (B, C, I, J, K)
            "report": {
                "input_ids": torch.randint(1, 4000, (batch_size, tokens), device=device),  # (B, T)
                "attention_mask": torch.ones(batch_size, tokens, dtype=torch.bool, device=device),  # (B, T)
                "sentence_ids": sentence_ids.contiguous(),
            },
        }

    return model, criterion, batch


def build_open_clip(preset: Preset, device: torch.device) -> tuple[nn.Module, nn.Module, Callable[[], dict]]:
    """open_clip's CLIP (no pretrained weights, nothing downloaded) + its ClipLoss, and a random-batch maker."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    if preset.clip_model == "tiny":
        vision = CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=16, image_size=64)
        text = CLIPTextCfg(context_length=preset.report_tokens, vocab_size=4000, width=32, heads=2, layers=1)
        model = CLIP(embed_dim=preset.embed_dim, vision_cfg=vision, text_cfg=text, output_dict=True)
    else:
        model = open_clip.create_model(preset.clip_model, pretrained=None, output_dict=True)
    model = model.to(device)
    image_size = model.visual.image_size
    image_size = image_size if isinstance(image_size, tuple) else (image_size, image_size)
    context = model.context_length
    loss = open_clip.loss.ClipLoss()

    def batch() -> dict:
        return {
            "image": torch.randn(preset.clip_batch, 3, *image_size, device=device),  # (B, 3, H, W)
            "text": torch.randint(1, 4000, (preset.clip_batch, context), device=device),  # (B, T)
        }

    return model, loss, batch


def medclip_step(model: nn.Module, criterion: nn.Module, batch: dict, autocast) -> Tensor:
    with autocast():
        outputs = model(batch)
    outputs = {
        key: ({k: v.float() for k, v in value.items()} if isinstance(value, dict) else value)
        for key, value in outputs.items()
    }
    outputs["logit_scale"] = outputs["logit_scale"].float()
    return criterion(**outputs)["loss"]


def open_clip_step(model: nn.Module, criterion: nn.Module, batch: dict, autocast) -> Tensor:
    with autocast():
        out = model(batch["image"], batch["text"])
    return criterion(out["image_features"].float(), out["text_features"].float(), out["logit_scale"].float())


def measure(
    name: str,
    build: Callable,
    step: Callable,
    batch_size: int,
    preset: Preset,
    device: torch.device,
    precision: str,
    peak: float,
    steps: int,
    warmup: int,
    compile_model: bool,
) -> Result:
    """Count one step's FLOPs, then time ``steps`` steps after ``warmup`` untimed ones."""
    model, criterion, make_batch = build(preset, device)
    model.train()
    if compile_model:
        encoders = getattr(model, "encoders", None)
        for module in encoders.values() if encoders is not None else [model]:
            module.compile()
    optimizer = torch.optim.AdamW([*model.parameters(), *criterion.parameters()], lr=1e-4, fused=device.type == "cuda")
    dtype = torch.bfloat16 if precision == "bf16" else None

    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    def one_step(batch: dict) -> None:
        loss = step(model, criterion, batch, autocast)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    batch = make_batch()
    for _ in range(warmup):
        one_step(batch)
    counter = FlopCounterMode(display=False)
    with counter:
        loss = step(model, criterion, batch, autocast)
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    flops = float(counter.get_total_flops())
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_step(batch)
    synchronize(device)
    seconds_per_step = (time.perf_counter() - start) / steps
    parameters = sum(p.numel() for p in model.parameters())
    return Result(name, batch_size / seconds_per_step, flops, flops / seconds_per_step / peak, parameters)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict[str, Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny presets of both models (CPU smoke run)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", default="auto", help="auto (bf16 on GPUs, fp32 on CPU) | bf16 | fp32")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 20 on GPU, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed steps first (default: 5 on GPU, 1 on CPU)")
    parser.add_argument("--ct-batch", type=int, default=0, help="medclip batch size (default: the preset's)")
    parser.add_argument("--clip-batch", type=int, default=0, help="open_clip batch size (default: the preset's)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoders (both sides)")
    args = parser.parse_args(argv)

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    precision = args.precision if args.precision != "auto" else ("bf16" if on_gpu else "fp32")
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    preset = PRESETS["tiny" if args.tiny else "full"]
    preset = Preset(
        **{
            **preset.__dict__,
            "ct_batch": args.ct_batch or preset.ct_batch,
            "clip_batch": args.clip_batch or preset.clip_batch,
        }
    )
    steps = args.steps or (20 if on_gpu else 3)
    warmup = args.warmup or (5 if on_gpu else 1)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak, peak_source = device_peak(device, dtype)
    device_name = torch.cuda.get_device_name(device) if on_gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device_name}; precision: {precision}; peak: {peak / 1e12:.3f} TFLOP/s [{peak_source}]")
    preset_name = "tiny" if args.tiny else "full"
    print(f"preset: {preset_name}; timed steps: {steps} after {warmup} warm-up; compile: {args.compile}")
    common = dict(
        preset=preset,
        device=device,
        precision=precision,
        peak=peak,
        steps=steps,
        warmup=warmup,
        compile_model=args.compile,
    )
    results = {
        "medclip": measure(
            f"medclip CT({preset.ct_preset} 3D ViT, {'x'.join(map(str, preset.ct_size))}) <-> report",
            build_medclip,
            medclip_step,
            preset.ct_batch,
            **common,
        ),
        "open_clip": measure(
            f"open_clip {preset.clip_model} CLIP",
            build_open_clip,
            open_clip_step,
            preset.clip_batch,
            **common,
        ),
    }
    for result in results.values():
        print(
            f"{result.name}: {result.parameters / 1e6:.1f} M parameters, {result.flops_per_step / 1e9:.2f} GFLOP/step, "
            f"{result.samples_per_s:.3f} samples/s, MFU {100 * result.mfu:.2f}%"
        )
    ratio = results["medclip"].mfu / results["open_clip"].mfu
    print(f"MFU ratio medclip / open_clip: {ratio:.2f}")
    return results


if __name__ == "__main__":
    main()
