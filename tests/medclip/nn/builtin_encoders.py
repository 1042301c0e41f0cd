"""The built-in encoders, small, with a collated batch of their own synthetic samples: what the LoRA and freezing
tests run over (every registered modality with its default encoder, plus the other encoder choices).

A plain module (not a test file) imported by the tests of ``medclip.nn``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import medclip
from medclip.types import Modality

# Small but real options per modality, so each encoder builds and runs in about a second on a shared CPU.
SMALL: dict[str, dict[str, Any]] = {
    "ct": {"size": [32, 32, 32]},
    "oct": {},
    "ecg": {"width": 32, "depth": 2, "seconds": 4.0},
    "expression": {"width": 32},
    "report": {"width": 32, "layers": 1, "heads": 2, "vocab_size": 200, "max_tokens": 32},
    "wsi": {"patch_size": 32, "max_patches": 4, "width": 32},
}
# (modality, options) of the other encoder choices, beyond each modality's default.
OTHER_ENCODERS: list[tuple[str, dict[str, Any]]] = [
    ("ct", {"encoder": "resnet"}),
    ("ecg", {"encoder": "vit1d"}),
    ("expression", {"encoder": "gene_transformer"}),
    # timm's own small test ViT (the Block / Attention / Mlp modules of every timm ViT) at its 160-pixel input
    ("wsi", {"encoder": "transformer", "patch_encoder": "test_vit", "patch_size": 160}),
]
HF_WORDS = "the lungs are clear no pleural effusion small nodule in right upper lobe normal chest . ,".split()


# Encoders that take over ~10 s on a loaded 2-core box (the WSI patch encoders run on full-size patches).
SLOW = {"wsi-default", "wsi-transformer"}


def every_encoder() -> list[tuple[str, dict[str, Any]]]:
    """(modality, options): every registered modality's default encoder, then the other built-in choices."""
    return [(name, {}) for name in medclip.list_modalities()] + OTHER_ENCODERS


def encoder_cases() -> list[Any]:
    """``every_encoder`` as pytest parameters, the slow ones marked ``slow``."""
    import pytest

    return [
        pytest.param(case, id=encoder_id(case), marks=[pytest.mark.slow] if encoder_id(case) in SLOW else [])
        for case in every_encoder()
    ]


def encoder_id(case: tuple[str, dict[str, Any]]) -> str:
    name, options = case
    return f"{name}-{options.get('encoder', 'default')}"


def build_plugin(name: str, options: dict[str, Any]) -> Modality:
    """The configured plugin, fitted on its synthetic samples when it learns preprocessing from data."""
    torch.manual_seed(0)
    plugin = medclip.get_modality(name, {**SMALL.get(name, {}), **options})
    if plugin.fits_on_data:
        plugin.fit(plugin.synthetic(4))
    return plugin


def synthetic_batch(plugin: Modality, n: int = 3) -> dict[str, Any]:
    transform = plugin.transforms(False)
    return plugin.collate([transform(sample) for sample in plugin.synthetic(n, seed=1)])


def tiny_hf_model(folder: Path) -> Path:
    """A tiny BERT and its WordPiece tokenizer saved with save_pretrained (a user's local model copy)."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *HF_WORDS]) + "\n")
    tokenizer = transformers.BertTokenizer(vocab=str(vocab_file))
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
