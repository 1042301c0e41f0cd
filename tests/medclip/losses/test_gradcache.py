"""GradCache (medclip/train/gradcache.py): chunked encoders give the gradients of one pass over the whole batch, the
RNG of each chunk is replayed exactly, and train.grad_cache_chunk trains the real pretrain loop to the same weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from medclip.losses import build_loss
from medclip.model import ContrastiveModel, ProjectionHead
from medclip.train.gradcache import GradCache, merge_outputs, slice_batch
from medclip.types import EncoderOutput

SPEC = {
    "clip": 1.0,
    "soft_label": {"weight": 0.5, "temperature": 0.5},
    "multi_positive": 0.5,
    "filip": 0.5,
    "token": 0.2,
    "prototype": {"weight": 0.2, "embed_dim": 6, "num_prototypes": 4},
}


class _TokenEncoder(nn.Module):
    """Linear pooled vector + 3 tokens (the last padded for some rows), with optional dropout (uses the RNG)."""

    def __init__(self, input_dim: int, width: int, dropout: float) -> None:
        super().__init__()
        self.output_dim = width
        self.pooled = nn.Linear(input_dim, width)
        self.tokens = nn.Linear(input_dim, 3 * width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: Tensor) -> EncoderOutput:
        tokens = torch.tanh(self.tokens(self.dropout(inputs))).reshape(inputs.shape[0], 3, self.output_dim)  # (B,3,W)
        token_mask = torch.ones(inputs.shape[0], 3, dtype=torch.bool)
        token_mask[:, 2] = inputs[:, 0] > 0
        return EncoderOutput(pooled=torch.tanh(self.pooled(self.dropout(inputs))), tokens=tokens, token_mask=token_mask)


def make_model(dropout: float) -> ContrastiveModel:
    torch.manual_seed(0)
    encoders = {"ecg": _TokenEncoder(7, 8, dropout), "report": _TokenEncoder(5, 8, dropout)}
    return ContrastiveModel(encoders, {name: ProjectionHead(8, 6) for name in encoders})


def make_batch(rows: int = 10) -> dict:
    generator = torch.Generator().manual_seed(3)
    labels = (torch.rand(rows, 3, generator=generator) < 0.5).to(torch.float64)
    labels[torch.rand(rows, 3, generator=generator) < 0.3] = float("nan")
    return {
        "ecg": torch.randn(rows, 7, generator=generator),
        "ecg_mask": torch.rand(rows, generator=generator) < 0.8,
        "report": torch.randn(rows, 5, generator=generator),
        "report_mask": torch.tensor([True, True, True, False, True, True, True, True, True, True])[:rows],
        "labels": labels,
        "patient_id": [f"p{i % 4}" for i in range(rows)],
        "row": list(range(rows)),
        "batch_size": rows,
    }


def gradients(*modules: nn.Module) -> dict[str, Tensor]:
    return {
        f"{index}.{name}": param.grad.clone()
        for index, module in enumerate(modules)
        for name, param in module.named_parameters()
        if param.grad is not None
    }


pytestmark = pytest.mark.usefixtures("one_thread", "float64_default")


@pytest.mark.parametrize("chunk", [1, 3, 4, 10])
def test_grad_cache_equals_one_full_batch_pass(chunk):
    batch = make_batch()
    model, criterion = make_model(dropout=0.0), build_loss(SPEC)
    reference = criterion(**model(batch))
    reference["loss"].backward()
    expected = gradients(model, criterion)
    model.zero_grad(), criterion.zero_grad()

    losses = GradCache(model, criterion, chunk).step(batch)
    assert losses["loss"].item() == pytest.approx(reference["loss"].item(), abs=1e-12)
    got = gradients(model, criterion)
    assert got.keys() == expected.keys() and len(got) > 8
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-9, atol=1e-12, msg=key)


def test_dropout_masks_are_replayed_exactly():
    """With dropout the reference is the same chunked forward with the graph kept (same RNG draws in the same order)."""
    batch, chunk = make_batch(), 4
    model, criterion = make_model(dropout=0.3), build_loss(SPEC)
    model.train()
    torch.manual_seed(11)
    bounds = [(0, 4), (4, 8), (8, 10)]
    outputs = merge_outputs([model(slice_batch(batch, a, b, 10)) for a, b in bounds], [4, 4, 2])
    reference = criterion(**outputs)
    reference["loss"].backward()
    expected = gradients(model, criterion)
    after_reference = torch.get_rng_state()
    model.zero_grad(), criterion.zero_grad()

    torch.manual_seed(11)
    losses = GradCache(model, criterion, chunk).step(batch)
    assert losses["loss"].item() == pytest.approx(reference["loss"].item(), abs=1e-12)
    for key, value in gradients(model, criterion).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-9, atol=1e-12, msg=key)
    assert torch.equal(torch.get_rng_state(), after_reference)  # the step leaves the RNG where a plain step would


def test_slice_batch_and_bad_chunk():
    batch = make_batch()
    part = slice_batch(batch, 2, 5, 10)
    assert part["batch_size"] == 3 and part["patient_id"] == ["p2", "p3", "p0"] and part["ecg"].shape == (3, 7)
    with pytest.raises(ValueError, match="chunk size must be >= 1"):
        GradCache(make_model(0.0), build_loss({"clip": 1.0}), 0)


def test_pretrain_with_grad_cache_reaches_the_same_weights(small_experiment, tmp_path):
    """The real loop (expression + report encoders, dropout off) with train.grad_cache_chunk=5 vs without."""
    from recipes.pretrain import pretrain

    no_dropout = ["modalities.expression.dropout=0", "modalities.report.dropout=0", "train.steps=2", "train.seed=3"]
    plain = pretrain(small_experiment(*no_dropout, "train.precision=fp32", out=tmp_path / "plain"))
    cached = pretrain(
        small_experiment(*no_dropout, "train.precision=fp32", "train.grad_cache_chunk=5", out=tmp_path / "cached")
    )
    weights_plain = load_file(str(tmp_path / "plain" / "checkpoint" / "model.safetensors"))
    weights_cached = load_file(str(tmp_path / "cached" / "checkpoint" / "model.safetensors"))
    assert weights_plain.keys() == weights_cached.keys()
    for key in weights_plain:
        torch.testing.assert_close(weights_cached[key], weights_plain[key], rtol=1e-4, atol=1e-5, msg=key)
    del plain, cached
