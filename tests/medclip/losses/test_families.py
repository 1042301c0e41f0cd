"""Single-process tests of the issue-6 losses: golden values, naive loop references (float64), gradient checks,
tiled == plain (values and gradients to 1e-5 in float32), masks, NaN labels, padded tokens, configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from medclip.config import ConfigError
from medclip.losses import (
    build_loss,
    clip_loss,
    cwcl_loss,
    filip_loss,
    gram_loss,
    multi_positive_loss,
    prototype_loss,
    sinkhorn_knopp,
    soft_label_loss,
    symile_loss,
    tiled_clip_loss,
    token_alignment_loss,
)
from medclip.losses.token import token_max_similarity
from medclip.model import patient_keys

pytestmark = pytest.mark.usefixtures("one_thread", "float64_default")


def unit(*shape: int, seed: int) -> Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def row_mask(rows: int, seed: int) -> Tensor:
    mask = torch.rand(rows, generator=torch.Generator().manual_seed(seed)) < 0.75
    mask[:2] = True
    return mask


def nan_labels(rows: int, classes: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(rows, classes, generator=generator) < 0.4).double()
    labels[torch.rand(rows, classes, generator=generator) < 0.3] = float("nan")
    labels[0] = float("nan")  # a sample with no known label
    labels[1] = 0.0  # a "no finding" sample
    return labels


def _lse(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def naive_soft_ce(logits: list[list[float]], weights: list[list[float]]) -> float:
    """Sum over rows of CE(softmax(weights row) -> softmax(logits row)); -inf weights have no mass."""
    total = 0.0
    for z, w in zip(logits, weights, strict=True):
        norm = _lse([v for v in w if v != float("-inf")])
        targets = [math.exp(v - norm) if v != float("-inf") else 0.0 for v in w]
        total += _lse(z) - sum(t * v for t, v in zip(targets, z, strict=True))
    return total


def naive_pair_loss(a: Tensor, b: Tensor, scale: float, mask: Tensor, weight_ab, weight_ba) -> float:
    rows = [i for i in range(a.shape[0]) if mask[i]]
    dot = lambda x, y: sum(p * q for p, q in zip(x.tolist(), y.tolist(), strict=True))  # noqa: E731
    logits_ab = [[scale * dot(a[i], b[j]) for j in rows] for i in rows]
    logits_ba = [[scale * dot(b[i], a[j]) for j in rows] for i in rows]
    w_ab = [[weight_ab(i, j) for j in rows] for i in rows]
    w_ba = [[weight_ba(i, j) for j in rows] for i in rows]
    return (naive_soft_ce(logits_ab, w_ab) + naive_soft_ce(logits_ba, w_ba)) / (2 * len(rows))


def naive_label_weight(labels: Tensor, temperature: float):
    def weight(i: int, j: int) -> float:
        if i == j:
            return 1 / temperature
        shared = [k for k in range(labels.shape[1]) if not (labels[i, k].isnan() or labels[j, k].isnan())]
        if not shared:
            return float("-inf")
        x, y = [labels[i, k].item() for k in shared], [labels[j, k].item() for k in shared]
        nx, ny = math.sqrt(sum(v * v for v in x)), math.sqrt(sum(v * v for v in y))
        if nx == 0 and ny == 0:
            return 1 / temperature
        if nx == 0 or ny == 0:
            return 0.0
        return sum(p * q for p, q in zip(x, y, strict=True)) / (nx * ny) / temperature

    return weight


# --- soft-label family ------------------------------------------------------------------------------------------


def test_soft_label_golden_two_samples():
    # labels (1, 0) and (0, 1): cosine 0, temperature 1 -> targets softmax([1, 0]) = [e/(1+e), 1/(1+e)] per row.
    # a = b = identity, scale 1: logits [[1, 0], [0, 1]]; each row: log(1 + e) - e/(1 + e) = 0.582203...
    eye = torch.eye(2)
    loss = soft_label_loss(eye, eye, torch.tensor(1.0), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    expected = math.log(1 + math.e) - math.e / (1 + math.e)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert loss.item() == pytest.approx(0.5822031, abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.2])
def test_soft_label_matches_naive(temperature):
    a, b, labels, mask = unit(9, 4, seed=1), unit(9, 4, seed=2), nan_labels(9, 3, seed=3), row_mask(9, 4)
    weight = naive_label_weight(labels, temperature)
    expected = naive_pair_loss(a, b, 3.0, mask, weight, weight)
    value = soft_label_loss(a, b, torch.tensor(3.0), labels, mask, temperature=temperature)
    assert value.item() == pytest.approx(expected, abs=1e-10)


def test_soft_label_without_labels_is_clip():
    a, b = unit(7, 4, seed=5), unit(7, 4, seed=6)
    unknown = torch.full((7, 2), float("nan"))
    value = soft_label_loss(a, b, torch.tensor(4.0), unknown)
    assert value.item() == pytest.approx(clip_loss(a, b, torch.tensor(4.0)).item(), abs=1e-12)


def test_cwcl_matches_naive():
    a, b, mask = unit(8, 4, seed=7), unit(8, 4, seed=8), row_mask(8, 9)

    def cos_weight(features: Tensor):
        return lambda i, j: math.log((1 + float(features[i] @ features[j])) / 2)

    expected = naive_pair_loss(a, b, 2.5, mask, cos_weight(b), cos_weight(a))
    assert cwcl_loss(a, b, torch.tensor(2.5), mask).item() == pytest.approx(expected, abs=1e-10)
    frozen_a, frozen_b = unit(8, 3, seed=10), unit(8, 3, seed=11)  # a frozen encoder's embeddings
    expected = naive_pair_loss(a, b, 2.5, mask, cos_weight(frozen_b), cos_weight(frozen_a))
    value = cwcl_loss(a, b, torch.tensor(2.5), mask, embeddings_a=frozen_a, embeddings_b=frozen_b)
    assert value.item() == pytest.approx(expected, abs=1e-10)


def test_multi_positive_matches_naive():
    a, b, mask = unit(8, 4, seed=12), unit(8, 4, seed=13), row_mask(8, 14)
    patients = patient_keys(["p0", "p1", "p0", "p2", "p3", "p1", "p4", "p5"])
    labels = torch.tensor([[1, 0], [0, 1], [0, 0], [1, 0], [0, 1], [1, 1], [float("nan")] * 2, [float("nan")] * 2])

    def weight(i: int, j: int) -> float:
        same_labels = bool(((labels[i] == labels[j]) | (labels[i].isnan() & labels[j].isnan())).all())
        same_labels &= not bool(labels[i].isnan().all())
        return 0.0 if (i == j or patients[i] == patients[j] or same_labels) else float("-inf")

    expected = naive_pair_loss(a, b, 3.0, mask, weight, weight)
    assert multi_positive_loss(a, b, torch.tensor(3.0), patients, labels, mask).item() == pytest.approx(expected)
    only_self = multi_positive_loss(a, b, torch.tensor(3.0), patient_keys([f"q{i}" for i in range(8)]), None, mask)
    assert only_self.item() == pytest.approx(clip_loss(a, b, torch.tensor(3.0), mask).item(), abs=1e-12)


def test_patient_keys_are_stable_and_equal_for_equal_ids():
    keys = patient_keys(["a", "b", "a"])
    assert keys.dtype == torch.long and keys[0] == keys[2] and keys[0] != keys[1]
    assert torch.equal(keys, patient_keys(["a", "b", "a"]))


# --- tiled == plain ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("every_row", [False, True], ids=["masked", "all-present"])
@pytest.mark.parametrize("name", ["clip", "soft_label", "soft_label_all_known", "cwcl", "multi_positive"])
def test_tiled_equals_plain_float32(name, every_row):
    torch.set_default_dtype(torch.float32)
    a = unit(200, 16, seed=15).requires_grad_()
    b = unit(200, 16, seed=16).requires_grad_()
    log_scale = torch.tensor(math.log(20.0), requires_grad=True)
    mask, labels = row_mask(200, 17), nan_labels(200, 5, 18).float()
    if every_row:
        mask = torch.ones(200, dtype=torch.bool)
    if name == "soft_label_all_known":  # the one-product fast path, with "no finding" (all-zero) rows
        labels, name = labels.nan_to_num(0.0), "soft_label"
        assert (labels.sum(dim=1) == 0).sum() > 2
    patients = torch.randint(0, 40, (200,), generator=torch.Generator().manual_seed(19))

    def run(tiled: bool) -> tuple[Tensor, ...]:
        options = {"tiled_above": 0, "tile_size": 64} if tiled else {"tiled_above": 10**9}
        scale = log_scale.exp()
        if name == "clip":
            value = tiled_clip_loss(a, b, scale, mask, tile_size=64) if tiled else clip_loss(a, b, scale, mask)
        elif name == "soft_label":
            value = soft_label_loss(a, b, scale, labels, mask, temperature=0.3, **options)
        elif name == "cwcl":
            value = cwcl_loss(a, b, scale, mask, **options)
        else:
            value = multi_positive_loss(a, b, scale, patients, labels, mask, **options)
        return (value, *torch.autograd.grad(value, (a, b, log_scale)))

    for tiled, plain in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(tiled, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("all_known", [False, True])
def test_soft_targets_one_pass_equals_the_two_pass_normalisers(all_known):
    """Known maximum weights fold the target normalisers into the logits' pass; without them a pass of its own."""
    from medclip.losses.soft_targets import LabelSimilarityWeights
    from medclip.losses.tiled import tiled_cross_entropy

    a, b = unit(70, 6, seed=30).requires_grad_(), unit(70, 6, seed=31).requires_grad_()
    scale = torch.tensor(7.0, requires_grad=True)
    labels = nan_labels(70, 4, 32)
    labels = labels.nan_to_num(0.0) if all_known else labels
    index = torch.arange(70)

    def run(one_pass: bool, shared: bool) -> tuple[Tensor, ...]:
        weights = LabelSimilarityWeights(labels, labels, index, index, temperature=0.25)
        other = weights if shared else LabelSimilarityWeights(labels, labels, index, index, temperature=0.25)
        if not one_pass:
            weights.max_log_weight = other.max_log_weight = None
        value = tiled_cross_entropy(
            a, b, scale, row_targets=weights, column_targets=other, symmetric=True, tile_size=16
        )
        return (value, *torch.autograd.grad(value, (a, b, scale)))

    reference = run(one_pass=False, shared=False)
    for one_pass, shared in ((True, True), (True, False), (False, True)):
        for got, expected in zip(run(one_pass, shared), reference, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_label_weights_fast_path_equals_the_general_one():
    from medclip.losses.soft_targets import LabelSimilarityWeights

    labels = nan_labels(40, 5, 33).nan_to_num(0.0)
    index = torch.arange(40)
    fast = LabelSimilarityWeights(labels, labels, index, index, temperature=0.5)
    assert fast.all_known
    general = LabelSimilarityWeights(labels, labels, index, index, temperature=0.5)
    general.all_known = False
    everything = slice(0, 40)
    torch.testing.assert_close(fast.block(everything, everything), general.block(everything, everything))
    weight = naive_label_weight(labels, 0.5)
    expected = torch.tensor([[weight(i, j) for j in range(40)] for i in range(40)])
    torch.testing.assert_close(fast.block(slice(3, 17), slice(10, 40)), expected[3:17, 10:40])


def test_tiled_gradcheck():
    a, b = unit(6, 3, seed=20).requires_grad_(), unit(6, 3, seed=21).requires_grad_()
    scale = torch.tensor(3.0, requires_grad=True)
    labels = nan_labels(6, 2, 22)
    assert torch.autograd.gradcheck(lambda x, y, s: tiled_clip_loss(x, y, s, tile_size=4), (a, b, scale))
    assert torch.autograd.gradcheck(
        lambda x, y, s: soft_label_loss(x, y, s, labels, tiled_above=0, tile_size=4), (a, b, scale)
    )


def test_clip_module_switches_to_tiled_above_threshold():
    a, b = unit(12, 4, seed=23), unit(12, 4, seed=24)
    tiled = build_loss({"clip": {"tiled_above": 8, "tile_size": 5}})
    plain = build_loss({"clip": 1.0})
    scale = torch.tensor(5.0)
    assert tiled(features={"a": a, "b": b}, logit_scale=scale)["loss"].item() == pytest.approx(
        plain(features={"a": a, "b": b}, logit_scale=scale)["loss"].item(), abs=1e-12
    )


# --- token level ------------------------------------------------------------------------------------------------


def tokens_with_padding(rows: int, length: int, seed: int) -> tuple[Tensor, Tensor]:
    tokens = unit(rows, length, 4, seed=seed)
    mask = torch.rand(rows, length, generator=torch.Generator().manual_seed(seed + 1)) < 0.7
    mask[:, 0] = True
    return tokens, mask


def naive_filip(a, b, ma, mb, scale, mask) -> Tensor:
    """The reference FILIP: the full (B, B, Ta, Tb) einsum."""
    rows = mask.nonzero().flatten()
    a, b, ma, mb = a[rows], b[rows], ma[rows], mb[rows]
    similarity = torch.einsum("ikd,jrd->ijkr", a, b)
    a_to_b = (similarity.masked_fill(~mb[None, :, None, :], -1e9).max(-1).values * ma[:, None]).sum(-1) / ma.sum(-1)[
        :, None
    ]
    b_to_a = (similarity.masked_fill(~ma[:, None, :, None], -1e9).max(2).values * mb[None]).sum(-1) / mb.sum(-1)[None]
    targets = torch.arange(rows.numel())
    return (F.cross_entropy(scale * a_to_b, targets) + F.cross_entropy(scale * b_to_a.T, targets)) / 2


@pytest.mark.parametrize("every_row", [False, True], ids=["masked", "all-present"])
@pytest.mark.parametrize("block_elements", [1, 50, 10**6])
def test_filip_matches_naive_einsum(block_elements, every_row):
    (a, ma), (b, mb) = tokens_with_padding(7, 5, 25), tokens_with_padding(7, 4, 27)
    a.requires_grad_(), b.requires_grad_()
    mask, scale = row_mask(7, 29), torch.tensor(4.0, requires_grad=True)
    mask = torch.ones_like(mask) if every_row else mask
    expected = naive_filip(a, b, ma, mb, scale, mask)
    value = filip_loss(a, b, scale, ma, mb, mask, block_elements=block_elements)
    assert value.item() == pytest.approx(expected.item(), abs=1e-12)
    grads = torch.autograd.grad(value, (a, b, scale)), torch.autograd.grad(expected, (a, b, scale))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_token_max_similarity_gradcheck():
    (a, ma), (b, mb) = tokens_with_padding(2, 3, 30), tokens_with_padding(3, 2, 32)
    a.requires_grad_(), b.requires_grad_()
    # random unit tokens have no ties, so the max is locally differentiable
    assert torch.autograd.gradcheck(lambda x, y: token_max_similarity(x, y, ma, mb, 7), (a, b))


def naive_token_alignment(a, b, ma, mb, mask, attention_temperature, temperature) -> float:
    def one_way(q, mq, k, mk) -> float:
        q, k = q[mq], k[mk]
        attended = F.normalize(torch.softmax(q @ k.T / attention_temperature, dim=-1) @ k, dim=-1)
        logits = q @ attended.T / temperature
        t = torch.arange(q.shape[0])
        return ((F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2).item()

    rows = [i for i in range(a.shape[0]) if mask[i]]
    per_sample = [(one_way(a[i], ma[i], b[i], mb[i]) + one_way(b[i], mb[i], a[i], ma[i])) / 2 for i in rows]
    return sum(per_sample) / len(rows)


def test_token_alignment_matches_naive_and_chunks_agree():
    (a, ma), (b, mb) = tokens_with_padding(6, 5, 33), tokens_with_padding(6, 4, 35)
    mask = row_mask(6, 37)
    expected = naive_token_alignment(a, b, ma, mb, mask, 0.2, 0.1)
    for chunk in (1, 4, 64):
        value = token_alignment_loss(a, b, ma, mb, mask, attention_temperature=0.2, temperature=0.1, chunk_size=chunk)
        assert value.item() == pytest.approx(expected, abs=1e-10)
    small_a, small_b = a[:2, :3].clone().requires_grad_(), b[:2, :3]  # gradcheck costs 2 evaluations per input
    small_ma, small_mb = ma[:2, :3], mb[:2, :3]
    assert torch.autograd.gradcheck(
        lambda x: token_alignment_loss(x, small_b, small_ma, small_mb, chunk_size=1), (small_a,)
    )


def test_token_losses_need_tokens_and_real_tokens():
    features = {"ct": unit(3, 4, seed=38), "report": unit(3, 4, seed=39)}
    with pytest.raises(ValueError, match="needs tokens from at least two modalities"):
        build_loss({"filip": 1.0})(
            features=features, tokens={"ct": unit(3, 2, 4, seed=1)}, logit_scale=torch.tensor(1.0)
        )
    tokens, mask = unit(3, 2, 4, seed=40), torch.ones(3, 2, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="at least one real token"):
        filip_loss(tokens, tokens, torch.tensor(1.0), mask, mask)


# --- prototypes ---------------------------------------------------------------------------------------------------


def swav_sinkhorn(scores: Tensor, epsilon: float, iterations: int) -> Tensor:
    """SwAV's published single-process sinkhorn (Caron et al. 2020, main_swav.py)."""
    q = torch.exp(scores / epsilon).t()  # (K, B)
    rows_total, prototypes = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= rows_total
    return (q * rows_total).t()


def test_sinkhorn_matches_swav_and_ignores_masked_rows():
    scores = unit(10, 4, seed=41) @ unit(5, 4, seed=42).T  # (B, K)
    torch.testing.assert_close(sinkhorn_knopp(scores, epsilon=0.3, iterations=3), swav_sinkhorn(scores, 0.3, 3))
    mask = row_mask(10, 43)
    masked = sinkhorn_knopp(scores, mask, epsilon=0.3, iterations=3)
    torch.testing.assert_close(masked[mask], swav_sinkhorn(scores[mask], 0.3, 3))
    assert torch.all(masked[~mask] == 0)


def test_prototype_loss_matches_reference():
    a, b, prototypes, mask = unit(9, 4, seed=44), unit(9, 4, seed=45), unit(3, 4, seed=46), row_mask(9, 47)
    rows = mask.nonzero().flatten()
    qa, qb = swav_sinkhorn(a[rows] @ prototypes.T, 0.5, 3), swav_sinkhorn(b[rows] @ prototypes.T, 0.5, 3)
    pa, pb = F.log_softmax(a[rows] @ prototypes.T / 0.1, 1), F.log_softmax(b[rows] @ prototypes.T / 0.1, 1)
    expected = -((qb * pa).sum(1) + (qa * pb).sum(1)).mean() / 2
    value = prototype_loss(a, b, prototypes * 3.0, mask, temperature=0.1, epsilon=0.5)  # prototypes get normalised
    assert value.item() == pytest.approx(expected.item(), abs=1e-12)


def test_prototype_embed_dim_mismatch_is_clear():
    loss = build_loss({"prototype": {"embed_dim": 8}})
    with pytest.raises(ValueError, match="set loss.prototype.embed_dim to model.embed_dim"):
        loss(features={"a": unit(3, 4, seed=1), "b": unit(3, 4, seed=2)}, logit_scale=torch.tensor(1.0))


# --- N modalities -------------------------------------------------------------------------------------------------


def test_symile_two_modalities_is_clip_and_three_match_naive():
    x = [unit(7, 5, seed=50 + m) for m in range(3)]
    scale = torch.tensor(6.0)
    assert symile_loss(x[:2], scale).item() == pytest.approx(clip_loss(x[0], x[1], scale).item(), abs=1e-12)
    total = 0.0
    for m in range(3):
        others = [k for k in range(3) if k != m]
        for i in range(7):
            logits = [6.0 * float((x[m][i] * x[others[0]][j] * x[others[1]][j]).sum()) for j in range(7)]
            total += _lse(logits) - logits[i]
    assert symile_loss(x, scale).item() == pytest.approx(total / 21, abs=1e-10)


def naive_gram(anchor: Tensor, others: list[Tensor], scale: float) -> float:
    size = anchor.shape[0]

    def volume(i: int, j: int) -> float:
        vectors = torch.stack([anchor[i], *(o[j] for o in others)], dim=1)  # (D, k)
        return math.sqrt(max(torch.det(vectors.T @ vectors).item(), 1e-8))

    volumes = [[volume(i, j) for j in range(size)] for i in range(size)]
    total = sum(_lse([-scale * v for v in volumes[i]]) + scale * volumes[i][i] for i in range(size))
    total += sum(_lse([-scale * volumes[i][j] for i in range(size)]) + scale * volumes[j][j] for j in range(size))
    return total / (2 * size)


def test_gram_matches_naive_determinants():
    anchor, others = unit(6, 5, seed=60), [unit(6, 5, seed=61), unit(6, 5, seed=62)]
    assert gram_loss(anchor, others, torch.tensor(4.0)).item() == pytest.approx(
        naive_gram(anchor, others, 4.0), abs=1e-10
    )
    anchor.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: gram_loss(t, others, torch.tensor(4.0)), (anchor,))


def test_modules_group_rows_by_present_modalities():
    features = {name: unit(8, 5, seed=70 + k) for k, name in enumerate(["report", "ct", "ecg"])}
    masks = {
        "report": torch.tensor([1, 1, 1, 1, 1, 1, 0, 0]).bool(),
        "ct": torch.tensor([1, 1, 1, 0, 0, 1, 1, 1]).bool(),
        "ecg": torch.tensor([1, 1, 1, 1, 1, 0, 1, 0]).bool(),
    }
    scale = torch.tensor(3.0)
    # groups: all three (rows 0-2), report+ecg (3, 4), report+ct (5), ct+ecg (6), ct only (7: nothing to contrast)
    out = build_loss({"symile": 1.0, "gram": {"anchor": "report"}})(features=features, masks=masks, logit_scale=scale)
    f = features
    groups = {
        ("report", "ct", "ecg"): [0, 1, 2],
        ("report", "ecg"): [3, 4],
        ("report", "ct"): [5],
        ("ct", "ecg"): [6],
    }
    symile_expected = (
        sum(len(rows) * symile_loss([f[n][rows] for n in names], scale).item() for names, rows in groups.items()) / 7
    )
    assert out["symile_loss"].item() == pytest.approx(symile_expected, abs=1e-12)
    gram_groups = {names: rows for names, rows in groups.items() if "report" in names}
    gram_expected = (
        sum(
            len(rows) * gram_loss(f["report"][rows], [f[n][rows] for n in names if n != "report"], scale).item()
            for names, rows in gram_groups.items()
        )
        / 6
    )
    assert out["gram_loss"].item() == pytest.approx(gram_expected, abs=1e-12)
    assert "symile/ct+ecg" in out and "gram/ct+ecg" not in out
    with pytest.raises(ValueError, match="anchor modality 'slide'"):
        build_loss({"gram": {"anchor": "slide"}})(features=features, masks=masks, logit_scale=scale)


# --- configs ------------------------------------------------------------------------------------------------------


def test_issue_example_config_combines():
    combined = build_loss({"clip": 1.0, "soft_label": 1.0, "token": 0.5, "prototype": {"weight": 0.2, "embed_dim": 4}})
    assert combined.weights == {"clip": 1.0, "soft_label": 1.0, "token": 0.5, "prototype": 0.2}
    features = {"ct": unit(5, 4, seed=80), "report": unit(5, 4, seed=81)}
    tokens = {"ct": unit(5, 3, 4, seed=82), "report": unit(5, 2, 4, seed=83)}
    out = combined(
        features=features, tokens=tokens, token_masks={}, labels=nan_labels(5, 2, 84), logit_scale=torch.tensor(5.0)
    )
    expected = out["clip_loss"] + out["soft_label_loss"] + 0.5 * out["token_loss"] + 0.2 * out["prototype_loss"]
    assert out["loss"].item() == pytest.approx(expected.item(), abs=1e-12)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"soft_label": {"temperature": 0}}, r"loss\.soft_label: temperature must be > 0"),
        ({"soft_label": {"tile_size": 0}}, r"tile_size must be >= 1"),
        ({"multi_positive": {"positives": ["visit"]}}, r"positives must be a non-empty subset"),
        ({"prototype": {"num_prototypes": 1}}, r"num_prototypes >= 2"),
        ({"filip": {"block_elements": 0}}, r"block_elements must be >= 1"),
        ({"token": {"temperature": -1}}, r"must be > 0"),
        ({"clip": {"tiled_above": -1}}, r"tiled_above >= 0"),
        ({"symile": {"modalitys": []}}, r"loss\.symile\.modalitys.*'modalities'"),
    ],
)
def test_config_errors(spec, expected):
    with pytest.raises(ConfigError, match=expected):
        build_loss(spec)


def test_soft_losses_need_their_inputs():
    features = {"ct": unit(3, 4, seed=90), "report": unit(3, 4, seed=91)}
    with pytest.raises(ValueError, match="needs label vectors"):
        build_loss({"soft_label": 1.0})(features=features, logit_scale=torch.tensor(1.0), labels=None)
    with pytest.raises(ValueError, match="needs patient_ids"):
        build_loss({"multi_positive": {"positives": ["patient"]}})(features=features, logit_scale=torch.tensor(1.0))
