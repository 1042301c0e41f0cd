"""Single-process tests of the loss seam: values against hand-computed and naive references, masks, N modalities,
the registry and CombinedLoss config handling, gradients and the nothing-to-contrast case."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medclip.config import ConfigError
from medclip.distributed import (
    all_gather_no_grad,
    all_gather_with_grad,
    all_reduce_sum_no_grad,
    get_rank,
    get_world_size,
    is_distributed,
)
from medclip.losses import (
    LOSSES,
    ClipLoss,
    CombinedLoss,
    LossConfig,
    SigLipLoss,
    build_loss,
    clip_loss,
    list_losses,
    register_loss,
    siglip_loss,
)
from medclip.model import ContrastiveModel, ProjectionHead
from medclip.train.ema import EmaTeacher
from medclip.types import EncoderOutput
from tests.helpers import unit_rows

pytestmark = pytest.mark.usefixtures("float64_default")


# --- naive references: one row at a time, Python floats, no torch ops shared with the code under test ------------


def _dot(x: list[float], y: list[float]) -> float:
    return sum(p * q for p, q in zip(x, y, strict=True))


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def naive_clip(a: Tensor, b: Tensor, scale: float, mask: list[bool] | None = None) -> float:
    a_rows, b_rows = a.tolist(), b.tolist()
    rows = [i for i in range(len(a_rows)) if mask is None or mask[i]]
    total = 0.0
    for i in rows:
        a_to_b = [scale * _dot(a_rows[i], b_rows[j]) for j in rows]
        b_to_a = [scale * _dot(b_rows[i], a_rows[j]) for j in rows]
        target = rows.index(i)
        total += _logsumexp(a_to_b) - a_to_b[target]
        total += _logsumexp(b_to_a) - b_to_a[target]
    return total / (2 * len(rows))


def naive_siglip(a: Tensor, b: Tensor, scale: float, bias: float, mask: list[bool] | None = None) -> float:
    a_rows, b_rows = a.tolist(), b.tolist()
    rows = [i for i in range(len(a_rows)) if mask is None or mask[i]]
    total = 0.0
    for i in rows:
        for j in rows:
            sign = 1.0 if i == j else -1.0
            logit = scale * _dot(a_rows[i], b_rows[j]) + bias
            total += math.log1p(math.exp(-sign * logit))  # -log sigmoid(sign * logit)
    return total / len(rows)


def random_mask(rows: int, seed: int, keep: float = 0.7) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, generator=generator) < keep
    mask[0] = True  # at least one valid row
    return mask


# --- hand-computed golden values ----------------------------------------------------------------------------------


def test_clip_golden_two_by_two():
    # a = identity, b rows = (0.6, 0.8) and (0.8, 0.6), scale 10: logits = [[6, 8], [8, 6]], symmetric.
    # Row 0 (target 0): -6 + log(e^6 + e^8) = log(1 + e^2); row 1 (target 1): -6 + log(e^8 + e^6) = log(1 + e^2).
    # b->a uses the transpose, the same matrix, so the mean of both directions is log(1 + e^2) = 2.126928011...
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    loss = clip_loss(a, b, torch.tensor(10.0))
    assert loss.item() == pytest.approx(2.1269280110429727, abs=1e-12)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(2)), abs=1e-12)


def test_clip_golden_asymmetric():
    # a = identity, b = [[1, 0], [0.6, 0.8]], scale 5: logits a->b = 5 * a @ b.T = [[5, 3], [0, 4]].
    # a->b: row 0: log(1 + e^-2); row 1: -4 + log(e^0 + e^4) = log(1 + e^-4).
    # b->a: logits = [[5, 0], [3, 4]]: row 0: log(1 + e^-5); row 1: -4 + log(e^3 + e^4) = log(1 + e^-1).
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    expected = (
        math.log1p(math.exp(-2)) + math.log1p(math.exp(-4)) + math.log1p(math.exp(-5)) + math.log1p(math.exp(-1))
    ) / 4
    assert clip_loss(a, b, torch.tensor(5.0)).item() == pytest.approx(expected, abs=1e-12)


def test_siglip_golden_two_by_two():
    # Scale 10, bias -5, a = identity, b rows (0.6, 0.8), (0.8, 0.6): logits = 10 * [[.6, .8], [.8, .6]] - 5
    # = [[1, 3], [3, 1]]. Diagonal (z = +1): -log sigmoid(1) = log(1 + e^-1), twice; off-diagonal (z = -1):
    # -log sigmoid(-3) = log(1 + e^3), twice. Sum / 2 rows = log(1 + e^-1) + log(1 + e^3)
    # = 0.3132617 + 3.0485874 = 3.3618490...
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    loss = siglip_loss(a, b, torch.tensor(10.0), torch.tensor(-5.0))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1)) + math.log1p(math.exp(3)), abs=1e-12)
    assert loss.item() == pytest.approx(3.3618490391, abs=1e-9)


# --- against naive loops and open_clip's formula ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_matches_naive_loop(seed):
    a, b = unit_rows(9, 5, seed), unit_rows(9, 5, seed + 100)
    mask = random_mask(9, seed)
    expected = naive_clip(a, b, 7.5, mask.tolist())
    assert clip_loss(a, b, torch.tensor(7.5), mask).item() == pytest.approx(expected, abs=1e-10)
    assert clip_loss(a, b, torch.tensor(7.5)).item() == pytest.approx(naive_clip(a, b, 7.5), abs=1e-10)


def test_clip_matches_open_clip_formula():
    a, b = unit_rows(16, 8, 3), unit_rows(16, 8, 4)
    scale = torch.tensor(14.2857)
    logits = scale * a @ b.T
    labels = torch.arange(16)
    open_clip_value = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert clip_loss(a, b, scale).item() == pytest.approx(open_clip_value.item(), abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_siglip_matches_naive_loop(seed):
    a, b = unit_rows(8, 4, seed), unit_rows(8, 4, seed + 50)
    mask = random_mask(8, seed + 7)
    loss = siglip_loss(a, b, torch.tensor(10.0), torch.tensor(-10.0), mask)
    assert loss.item() == pytest.approx(naive_siglip(a, b, 10.0, -10.0, mask.tolist()), abs=1e-10)
    loss = siglip_loss(a, b, torch.tensor(3.0), torch.tensor(0.5))
    assert loss.item() == pytest.approx(naive_siglip(a, b, 3.0, 0.5), abs=1e-10)


# --- masks ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_masked_rows_equal_dropped_rows(name):
    a, b = unit_rows(7, 4, 11), unit_rows(7, 4, 12)
    mask = torch.tensor([True, False, True, True, False, True, False])
    garbage_a, garbage_b = a.clone(), b.clone()
    garbage_a[~mask] = float("nan")  # masked rows must never be read: not as anchors, not as negatives
    garbage_b[~mask] = 1e6

    def loss_of(x: Tensor, y: Tensor, row_mask: Tensor | None) -> Tensor:
        if name == "clip":
            return clip_loss(x, y, torch.tensor(9.0), row_mask)
        return siglip_loss(x, y, torch.tensor(9.0), torch.tensor(-4.0), row_mask)

    full_a, full_b = garbage_a.requires_grad_(), garbage_b.requires_grad_()
    masked = loss_of(full_a, full_b, mask)
    kept_a, kept_b = a[mask].clone().requires_grad_(), b[mask].clone().requires_grad_()
    dropped = loss_of(kept_a, kept_b, None)
    assert masked.item() == pytest.approx(dropped.item(), abs=1e-12)
    masked.backward()
    dropped.backward()
    torch.testing.assert_close(full_a.grad[mask], kept_a.grad)
    torch.testing.assert_close(full_b.grad[mask], kept_b.grad)
    assert torch.all(full_a.grad[~mask] == 0) and torch.all(full_b.grad[~mask] == 0)


def test_bad_shapes_raise():
    a = unit_rows(4, 3, 0)
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(a, unit_rows(5, 3, 1), torch.tensor(1.0))
    with pytest.raises(ValueError, match="mask has shape"):
        siglip_loss(a, a, torch.tensor(1.0), torch.tensor(0.0), torch.ones(3, dtype=torch.bool))


# --- modules: N modalities, pairs, metrics ---------------------------------------------------------------------------


def three_modalities() -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    features = {"ct": unit_rows(6, 4, 1), "report": unit_rows(6, 4, 2), "expression": unit_rows(6, 4, 3)}
    masks = {
        "ct": torch.tensor([True, True, False, True, True, False]),
        "report": torch.tensor([True, True, True, True, False, True]),
        "expression": torch.tensor([False, True, True, True, True, True]),
    }
    return features, masks


def pair_mask(masks: dict[str, Tensor], a: str, b: str) -> list[bool]:
    return (masks[a] & masks[b]).tolist()


def test_clip_all_pairs_three_modalities():
    features, masks = three_modalities()
    out = ClipLoss()(features=features, masks=masks, logit_scale=torch.tensor(8.0), labels=None, tokens={})
    pairs = [("ct", "report"), ("ct", "expression"), ("report", "expression")]
    per_pair = [naive_clip(features[a], features[b], 8.0, pair_mask(masks, a, b)) for a, b in pairs]
    assert out["clip_loss"].item() == pytest.approx(sum(per_pair) / 3, abs=1e-10)
    for (a, b), value in zip(pairs, per_pair, strict=True):
        assert out[f"clip/{a}-{b}"].item() == pytest.approx(value, abs=1e-10)
        assert 0.0 <= out[f"clip/{a}-{b}/top1"].item() <= 1.0
    assert [key for key in out if key.endswith("_loss")] == ["clip_loss"]


def test_pairs_without_valid_rows_are_left_out_of_the_mean():
    features, masks = three_modalities()
    masks["expression"] = masks["expression"] & ~masks["ct"]  # no sample has both ct and expression
    out = ClipLoss()(features=features, masks=masks, logit_scale=torch.tensor(8.0))
    pairs = [("ct", "report"), ("report", "expression")]
    per_pair = [naive_clip(features[a], features[b], 8.0, pair_mask(masks, a, b)) for a, b in pairs]
    assert out["clip_loss"].item() == pytest.approx(sum(per_pair) / 2, abs=1e-10)
    assert "clip/ct-expression" not in out


def test_anchor_pairs_only():
    features, masks = three_modalities()
    loss = build_loss({"siglip": {"anchor": "report", "init_logit_bias": -2.0}})
    out = loss(features=features, masks=masks, logit_scale=torch.tensor(5.0))
    pairs = [("report", "ct"), ("report", "expression")]
    per_pair = [naive_siglip(features[a], features[b], 5.0, -2.0, pair_mask(masks, a, b)) for a, b in pairs]
    assert out["siglip_loss"].item() == pytest.approx(sum(per_pair) / 2, abs=1e-10)
    assert set(out) == {
        "siglip_loss",
        "siglip/report-ct",
        "siglip/report-ct/top1",
        "siglip/report-expression",
        "siglip/report-expression/top1",
        "siglip/logit_bias",
        "loss",
    }


def test_top1_metric_counts_local_retrieval():
    a = torch.eye(3)  # row i matches b row i except row 2, whose best match is row 0 in both directions
    b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = ClipLoss()(features={"x": a, "y": b}, logit_scale=torch.tensor(1.0))
    # a->b: rows 0, 1 right, row 2 (scores 0, 0, 0: argmax 0) wrong -> 2/3. b->a: columns of a @ b.T = [[1,0,1],
    # [0,1,0],[0,0,0]]: column 0 -> row 0 right, column 1 -> row 1 right, column 2 -> row 0 wrong -> 2/3.
    assert out["clip/x-y/top1"].item() == pytest.approx(2 / 3)


def test_module_input_errors():
    features, masks = three_modalities()
    with pytest.raises(ValueError, match="at least two modalities"):
        ClipLoss()(features={"ct": features["ct"]}, logit_scale=torch.tensor(1.0))
    with pytest.raises(ValueError, match="anchor modality 'ecg'"):
        build_loss({"clip": {"anchor": "ecg"}})(features=features, masks=masks, logit_scale=torch.tensor(1.0))
    with pytest.raises(ValueError, match="logit_scale"):
        ClipLoss()(features=features, masks=masks)


# --- CombinedLoss, configs, registry ------------------------------------------------------------------------------


def test_combined_loss_weights_and_entries():
    features, masks = three_modalities()
    combined = build_loss({"clip": 2.0, "siglip": {"weight": 0.5, "init_logit_bias": -10}})
    assert isinstance(combined, CombinedLoss)
    assert combined.weights == {"clip": 2.0, "siglip": 0.5}
    assert isinstance(combined.losses["siglip"], SigLipLoss)
    out = combined(features=features, masks=masks, logit_scale=torch.tensor(10.0), labels=None)
    pairs = [("ct", "report"), ("ct", "expression"), ("report", "expression")]
    clip_value = sum(naive_clip(features[a], features[b], 10.0, pair_mask(masks, a, b)) for a, b in pairs) / 3
    siglip_value = sum(naive_siglip(features[a], features[b], 10.0, -10.0, pair_mask(masks, a, b)) for a, b in pairs)
    siglip_value /= 3
    assert out["clip_loss"].item() == pytest.approx(clip_value, abs=1e-10)
    assert out["siglip_loss"].item() == pytest.approx(siglip_value, abs=1e-10)
    assert out["loss"].item() == pytest.approx(2.0 * clip_value + 0.5 * siglip_value, abs=1e-10)
    assert out["siglip/logit_bias"].item() == -10.0
    assert {key for key in out if key.endswith("_loss")} == {"clip_loss", "siglip_loss"}


def test_defaults_and_null_entry():
    combined = build_loss({"clip": None, "siglip": {}})
    assert combined.weights == {"clip": 1.0, "siglip": 1.0}
    assert combined.losses["siglip"].logit_bias.item() == -10.0  # the paper's initial bias
    assert combined.losses["clip"].config.pairs == "all"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"clp": 1.0}, r"unknown loss 'loss\.clp'; did you mean 'clip'\?"),
        ({"clip": {"wieght": 1.0}}, r"loss\.clip\.wieght.*did you mean 'weight'"),
        ({"siglip": {"init_logit_bais": -10}}, r"loss\.siglip\.init_logit_bais.*'init_logit_bias'"),
        ({"siglip": {"init_logit_bias": "minus ten"}}, r"loss\.siglip\.init_logit_bias: expected a number"),
        ({"clip": -1.0}, r"loss\.clip: loss weight must be a finite number >= 0"),
        ({"clip": True}, r"loss\.clip: expected a weight or a mapping"),
        ({"clip": "1.0x"}, r"loss\.clip: expected a weight or a mapping"),
        ({"clip": {"pairs": "some"}}, r"loss\.clip: loss pairs must be 'all' or 'anchor'"),
        ({"clip": {"pairs": "anchor"}}, r"needs the anchor modality"),
        ({"clip": {"pairs": "all", "anchor": "report"}}, r"contradicts anchor 'report'"),
        ({}, r"name at least one loss"),
    ],
)
def test_config_errors(spec, expected):
    with pytest.raises(ConfigError, match=expected):
        build_loss(spec)


def test_registry_lists_builtins():
    assert {"clip", "siglip"} <= set(list_losses())
    assert LOSSES.get("clip") is ClipLoss and LOSSES.get("siglip") is SigLipLoss


@dataclass
class _CosineConfig(LossConfig):
    margin: float = 0.0


class _MeanCosineDistance(nn.Module):
    """A real third-party-style loss: 1 - mean cosine of the first two modalities, plus a margin."""

    config_class = _CosineConfig

    def __init__(self, config: _CosineConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, features, **unused):
        a, b = list(features.values())[:2]
        value = 1 - (a * b).sum(-1).mean() + self.config.margin
        return {"cosine_loss": value, "cosine/mean": (1 - value).detach()}


@pytest.fixture
def registered_cosine_loss():
    register_loss("test_mean_cosine")(_MeanCosineDistance)
    yield "test_mean_cosine"
    LOSSES._items.pop("test_mean_cosine")  # keep the shared registry as other tests expect it


def test_third_party_loss_combines(registered_cosine_loss):
    features, masks = three_modalities()
    combined = build_loss({"clip": 1.0, registered_cosine_loss: {"weight": 3.0, "margin": 0.25}})
    out = combined(features=features, masks=masks, logit_scale=torch.tensor(4.0))
    cosine = 1 - (features["ct"] * features["report"]).sum(-1).mean().item() + 0.25
    assert out["cosine_loss"].item() == pytest.approx(cosine, abs=1e-12)
    assert out["loss"].item() == pytest.approx(out["clip_loss"].item() + 3.0 * cosine, abs=1e-12)
    with pytest.raises(ConfigError, match=r"loss\.test_mean_cosine\.margn.*'margin'"):
        build_loss({registered_cosine_loss: {"margn": 1.0}})


def test_register_loss_rejects_what_cannot_be_configured():
    with pytest.raises(TypeError, match="nn.Module"):
        register_loss("not_a_module")(object)

    class NoConfig(nn.Module):
        pass

    with pytest.raises(TypeError, match="config_class must be a dataclass"):
        register_loss("no_config")(NoConfig)
    assert "not_a_module" not in list_losses() and "no_config" not in list_losses()


class _TinyEncoder(nn.Module):
    """A real (small) encoder: a linear layer over a feature vector, returning pooled features and 3 tokens (the
    last one padding for samples whose first input is negative), as token-level losses need."""

    def __init__(self, input_dim: int, width: int) -> None:
        super().__init__()
        self.output_dim = width
        self.linear = nn.Linear(input_dim, width)
        self.token_linear = nn.Linear(input_dim, 3 * width)

    def forward(self, inputs: Tensor) -> EncoderOutput:
        tokens = torch.tanh(self.token_linear(inputs)).reshape(inputs.shape[0], 3, self.output_dim)  # (B, 3, W)
        token_mask = torch.ones(inputs.shape[0], 3, dtype=torch.bool)
        token_mask[:, 2] = inputs[:, 0] >= 0
        return EncoderOutput(pooled=torch.tanh(self.linear(inputs)), tokens=tokens, token_mask=token_mask)


def tiny_model() -> ContrastiveModel:
    torch.manual_seed(0)
    encoders = {"ecg": _TinyEncoder(12, 8), "report": _TinyEncoder(10, 8)}
    heads = {name: ProjectionHead(8, 6) for name in encoders}
    return ContrastiveModel(encoders, heads)


LOSS_OPTIONS = {"prototype": {"embed_dim": 6, "num_prototypes": 4}}  # tiny_model embeds into 6 dimensions
# their temperatures are their own (or they have none): the logit scale gets a zero gradient
SCALE_FREE_LOSSES = {"token", "prototype", "uniformity"}
NON_POSITIVE_LOSSES = {"uniformity"}  # the log of a mean Gaussian potential (each <= 1) is <= 0


@pytest.mark.parametrize("name", list_losses(consumes="embeddings"))
def test_every_registered_loss_trains_on_model_outputs(name):
    """timm-style: every registered loss runs on ContrastiveModel outputs and sends gradients to every parameter."""
    model = tiny_model()
    loss = build_loss({name: LOSS_OPTIONS.get(name, 1.0)})
    generator = torch.Generator().manual_seed(1)
    batch = {
        "ecg": torch.randn(5, 12, generator=generator),
        "ecg_mask": torch.tensor([True, True, False, True, True]),
        "report": torch.randn(5, 10, generator=generator),
        "report_mask": torch.tensor([True, False, True, True, True]),
        "labels": torch.full((5, 2), float("nan")),
        "patient_id": ["p1", "p2", "p1", "p3", "p4"],
    }
    teacher = {}
    if any(getattr(module, "needs_teacher", False) for module in loss.losses.values()):
        ema = EmaTeacher(model, decay=0.5)  # a teacher that lags behind the model (a fresh copy gives no gradient)
        with torch.no_grad():
            for parameter in ema.parameters.values():
                parameter.mul_(0.5)
        teacher = ema.outputs(batch)
    out = loss(**model(batch), **teacher)
    assert torch.isfinite(out["loss"]) and (
        out["loss"].item() < 0 if name in NON_POSITIVE_LOSSES else out["loss"].item() > 0
    )
    out["loss"].backward()
    for param_name, param in list(model.named_parameters()) + list(loss.named_parameters()):
        reads_tokens = name in {"token", "filip"}
        if ("token_linear" in param_name) != reads_tokens and "encoders" in param_name:
            continue  # pooled-feature losses do not read the tokens, token-level losses not the pooled vector
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
        if name in SCALE_FREE_LOSSES and param_name == "log_logit_scale":
            continue
        assert param.grad.abs().sum() > 0, param_name


def test_model_outputs_match_the_naive_reference():
    model = tiny_model()
    generator = torch.Generator().manual_seed(2)
    batch = {"ecg": torch.randn(4, 12, generator=generator), "report": torch.randn(4, 10, generator=generator)}
    batch["ecg_mask"] = torch.tensor([True, True, True, False])
    outputs = model(batch)
    value = build_loss({"clip": 1.0})(**outputs)["loss"]
    features = outputs["features"]
    scale = outputs["logit_scale"].item()
    assert value.item() == pytest.approx(
        naive_clip(features["ecg"], features["report"], scale, [1, 1, 1, 0]), abs=1e-10
    )


# --- gradients and the nothing-to-contrast case ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_gradients_reach_features_scale_and_bias(name):
    a = unit_rows(6, 4, 21).requires_grad_()
    b = unit_rows(6, 4, 22).requires_grad_()
    log_scale = torch.tensor(math.log(10.0), requires_grad=True)
    module = ClipLoss() if name == "clip" else SigLipLoss()
    out = module(features={"a": a, "b": b}, logit_scale=log_scale.exp())
    out[f"{name}_loss"].backward()
    for tensor in [a, b, log_scale, *module.parameters()]:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0


def test_clip_gradient_matches_finite_differences():
    a = unit_rows(4, 3, 31).requires_grad_()
    b = unit_rows(4, 3, 32)
    mask = torch.tensor([True, True, False, True])
    assert torch.autograd.gradcheck(lambda x: clip_loss(x, b, torch.tensor(3.0), mask), (a,))
    assert torch.autograd.gradcheck(lambda x: siglip_loss(x, b, torch.tensor(3.0), torch.tensor(-1.0), mask), (a,))


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_no_valid_rows_gives_connected_zero(name):
    a = unit_rows(3, 4, 41).requires_grad_()
    b = unit_rows(3, 4, 42).requires_grad_()
    scale = torch.tensor(5.0, requires_grad=True)
    nobody = torch.zeros(3, dtype=torch.bool)
    if name == "clip":
        value = clip_loss(a, b, scale, nobody)
    else:
        value = siglip_loss(a, b, scale, torch.tensor(-10.0), nobody)
    assert value.item() == 0.0 and value.grad_fn is not None
    value.backward()
    for tensor in (a, b, scale):
        assert tensor.grad is not None and torch.all(tensor.grad == 0)

    module = ClipLoss() if name == "clip" else SigLipLoss()
    c = unit_rows(3, 4, 43).requires_grad_()
    masks = {"a": nobody, "b": torch.ones(3, dtype=torch.bool), "c": nobody}
    out = module(features={"a": a, "b": b, "c": c}, masks=masks, logit_scale=scale)
    assert out[f"{name}_loss"].item() == 0.0 and out[f"{name}_loss"].requires_grad
    assert not any(key.endswith("/top1") for key in out)  # no pair had anything to contrast
    out[f"{name}_loss"].backward()
    for tensor in (c, *module.parameters()):  # under DDP every parameter must get a (zero) gradient
        assert tensor.grad is not None and torch.all(tensor.grad == 0)


def test_zero_loss_ignores_nan_features():
    a = torch.full((2, 3), float("nan"), requires_grad=True)
    value = clip_loss(a, a, torch.tensor(1.0), torch.zeros(2, dtype=torch.bool))
    assert value.item() == 0.0


def test_distributed_helpers_are_identity_in_one_process():
    assert not is_distributed() and get_rank() == 0 and get_world_size() == 1
    tensor = torch.randn(3, 2, requires_grad=True)
    assert all_gather_with_grad(tensor) is tensor
    gathered = all_gather_no_grad(tensor)
    assert torch.equal(gathered, tensor) and not gathered.requires_grad
    reduced = all_reduce_sum_no_grad(tensor)
    assert torch.equal(reduced, tensor) and not reduced.requires_grad
    mask = torch.tensor([True, False])
    assert torch.equal(all_gather_no_grad(mask), mask)
