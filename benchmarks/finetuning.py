"""Fine-tuning costs side by side: medclip's LoRA against Hugging Face PEFT's on the same BERT, full training against
LoRA and a frozen (LiT) tower, and medclip's EMA teacher update against timm's ``ModelEmaV3``.

    python benchmarks/finetuning.py            # BERT-base-sized text encoder (random weights, nothing downloaded)
    python benchmarks/finetuning.py --quick    # 2 layers, smaller batch: a smoke run

Correctness first: the same adapters (PEFT's A and B copied into medclip's) must give the same outputs, and the EMA
updates the same weights. Then each training mode runs in a fresh process (so its peak RSS is its own): forward +
backward + AdamW of the encoder with a linear head, batch of token sequences, median step time over the timed steps.
AdamW state = 2 float32 moments per trained parameter. PEFT (``pip install peft``) is only needed here.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

TARGETS = ["query", "key", "value", "output.dense", "intermediate.dense"]  # medclip's default for BERT
MODES = ["full", "lora_medclip", "lora_peft", "frozen"]


def bert(layers: int) -> nn.Module:
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(num_hidden_layers=layers, attn_implementation="sdpa")  # BERT-base widths
    return transformers.BertModel(config, add_pooling_layer=False)


def inputs(batch: int, tokens: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(5, 30000, (batch, tokens), generator=generator),
        "attention_mask": torch.ones(batch, tokens, dtype=torch.long),
    }


def medclip_lora(model: nn.Module, r: int = 8) -> nn.Module:
    from medclip.nn.freeze import freeze_all_but_adapters
    from medclip.nn.lora import inject_lora
    from medclip.types import LoRAConfig

    inject_lora(model, LoRAConfig(r=r, alpha=2.0 * r, targets=TARGETS), "report")
    freeze_all_but_adapters(model)
    return model


def peft_lora(model: nn.Module, r: int = 8) -> nn.Module:
    import peft

    config = peft.LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=TARGETS, bias="none")
    return peft.get_peft_model(model, config)


def check_same_outputs(layers: int) -> float:
    """Largest output difference of medclip's and PEFT's adapters holding the same (non-zero) A and B."""
    base = bert(layers).eval()
    ours, theirs = medclip_lora(copy.deepcopy(base)), peft_lora(copy.deepcopy(base))
    generator = torch.Generator().manual_seed(2)
    ours_modules = dict(ours.named_modules())
    copied = 0
    with torch.no_grad():
        for name, module in theirs.base_model.model.named_modules():
            if hasattr(module, "lora_A") and isinstance(module.lora_A, nn.ModuleDict) and "default" in module.lora_A:
                down, up = module.lora_A["default"].weight, module.lora_B["default"].weight
                up.copy_(torch.randn(up.shape, generator=generator) * 0.05)
                ours_modules[name].lora_A.copy_(down)
                ours_modules[name].lora_B.copy_(up)
                copied += 1
        batch = inputs(2, 32)
        a = ours(**batch).last_hidden_state
        b = theirs(**batch).last_hidden_state
        plain = base(**batch).last_hidden_state
    if copied != 6 * layers or torch.allclose(a, plain):
        raise RuntimeError(f"the adapters were not compared ({copied} copied, outputs equal the base model's)")
    return float((a - b).abs().max())


def saved_for_backward(encoder: nn.Module, data: dict[str, torch.Tensor]) -> int:
    """Bytes of the activations one forward keeps for backward (distinct storages, parameters excluded).

    Peak RSS is a blunt measure on a CPU (the allocator keeps freed temporaries); this counts what autograd holds.
    """
    parameters = {parameter.untyped_storage().data_ptr() for parameter in encoder.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = encoder(**data).last_hidden_state.mean()
    if output.requires_grad:  # a frozen encoder keeps nothing and has nothing to backpropagate
        output.backward()
    encoder.zero_grad(set_to_none=True)
    return sum(storages.values())


def run_mode(mode: str, layers: int, batch: int, tokens: int, steps: int, warmup: int) -> dict[str, float]:
    """One mode in this process: step times and the process's peak RSS."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    encoder = bert(layers)
    if mode == "lora_medclip":
        encoder = medclip_lora(encoder)
    elif mode == "lora_peft":
        encoder = peft_lora(encoder)
    elif mode == "frozen":
        from medclip.nn.freeze import freeze

        freeze(encoder, True, "report")
    head = nn.Linear(768, 128)
    trained = [p for p in [*encoder.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    data = inputs(batch, tokens)
    encoder.train()
    saved = saved_for_backward(encoder, data)
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        hidden = encoder(**data).last_hidden_state.mean(dim=1)  # (B, 768)
        loss = head(hidden).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return {
        "trainable": sum(p.numel() for p in trained),
        "total": sum(p.numel() for p in encoder.parameters()) + sum(p.numel() for p in head.parameters()),
        "step_s": statistics.median(times),
        "saved_mb": saved / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def ema_update_times(layers: int, repeats: int) -> dict[str, float]:
    """medclip's EmaTeacher.update vs timm's ModelEmaV3.update on the same model; same weights after both."""
    from timm.utils.model_ema import ModelEmaV3

    from medclip.train.ema import EmaTeacher

    model = bert(layers)
    ours, theirs = EmaTeacher(model, decay=0.995), ModelEmaV3(model, decay=0.995)
    timings: dict[str, list[float]] = {"medclip": [], "timm": []}
    for _ in range(repeats):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.01)
        start = time.perf_counter()
        ours.update(model)
        timings["medclip"].append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs.update(model)  # no step argument: fixed decay, like medclip's
        timings["timm"].append(time.perf_counter() - start)
    difference = max(
        float((a - b).abs().max())
        for a, b in zip(ours.model.state_dict().values(), theirs.module.state_dict().values(), strict=True)
        if a.is_floating_point()
    )
    return {
        "medclip_ms": 1000 * statistics.median(timings["medclip"]),
        "timm_ms": 1000 * statistics.median(timings["timm"]),
        "max_difference": difference,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 layers, batch 4 x 64 tokens")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # a child process's single mode
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    layers, batch, tokens = (2, 4, 64) if args.quick else (12, 8, 128)
    if args.mode:
        print(json.dumps(run_mode(args.mode, layers, batch, tokens, args.steps, args.warmup)))
        return

    print(f"BERT-base widths, {layers} layers, batch {batch} x {tokens} tokens, LoRA r=8 alpha=16 on {TARGETS}")
    print(f"medclip vs PEFT adapters with the same A and B: max |output difference| = {check_same_outputs(2):.2e}")
    results = {}
    for mode in MODES:
        command = [sys.executable, __file__, "--mode", mode, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        command += ["--quick"] if args.quick else []
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(output.strip().splitlines()[-1])
    full = results["full"]
    print("| mode | trained parameters | AdamW state MB | activations kept MB | step s | vs full | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for mode, result in results.items():
        share, ratio = 100 * result["trainable"] / result["total"], result["step_s"] / full["step_s"]
        print(
            f"| {mode} | {result['trainable']:,} ({share:.2f}%) | {8 * result['trainable'] / 2**20:.1f} | "
            f"{result['saved_mb']:.0f} | {result['step_s']:.3f} | {ratio:.2f}x | {result['peak_rss_mb']:.0f} |"
        )
    ema = ema_update_times(layers, repeats=args.steps)
    print(
        f"EMA update of {ema['parameters']:,} parameters: medclip {ema['medclip_ms']:.1f} ms, "
        f"timm ModelEmaV3 {ema['timm_ms']:.1f} ms (max weight difference {ema['max_difference']:.1e})"
    )


if __name__ == "__main__":
    main()
