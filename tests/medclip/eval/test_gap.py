"""Gap removal restores the retrieval ranks an artificial modality gap destroyed, with centroids from a reference
set (as a deployed search would) or from the evaluated set itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medclip.eval import recall_at_k, retrieval_ranks
from medclip.eval.gap import gap_removed, modality_centroid, remove_modality_gap

N, D = 200, 32


def paired_views(generator: torch.Generator, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy views of shared unit vectors: a space without a gap, where R@1 is far from perfect."""
    shared = F.normalize(torch.randn(n, D, generator=generator, dtype=torch.float64), dim=-1)
    noise = 1.2 / D**0.5
    return (
        shared + noise * torch.randn(n, D, generator=generator, dtype=torch.float64),
        shared + noise * torch.randn(n, D, generator=generator, dtype=torch.float64),
    )


def gap_offsets(generator: torch.Generator, size: float) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(size * F.normalize(torch.randn(D, generator=generator, dtype=torch.float64), dim=0) for _ in "ab")


@pytest.mark.parametrize("size", [2.0, 4.0])
def test_gap_removal_restores_retrieval_ranks(size):
    generator = torch.Generator().manual_seed(0)
    query, target = paired_views(generator)
    offset_query, offset_target = gap_offsets(generator, size)
    gapped_query, gapped_target = query + offset_query, target + offset_target  # each modality in its own cone

    without_gap = retrieval_ranks(query, target).double().numpy()
    with_gap = retrieval_ranks(gapped_query, gapped_target).double().numpy()
    removed = retrieval_ranks(*gap_removed(gapped_query, gapped_target)).double().numpy()
    assert with_gap.mean() > 3 * without_gap.mean()  # the gap really hurts: hubs near the other centroid
    # Centring undoes the shift, not the normalisation after it (rows far along the offset were shrunk more), so the
    # ranks come back close to, not exactly, the gap-free ones.
    assert removed.mean() == pytest.approx(without_gap.mean(), rel=0.2)
    assert (removed <= 1).mean() >= 0.8 * (without_gap <= 1).mean()
    assert recall_at_k(gapped_query, gapped_target, ks=(1,))["R@1"] < 0.6 * (without_gap <= 1).mean()


def test_centroids_from_a_reference_set_serve_new_queries():
    generator = torch.Generator().manual_seed(1)
    offset_query, offset_target = gap_offsets(generator, 4.0)
    reference_query, reference_target = paired_views(generator)
    query, target = paired_views(generator)
    centroid_query = modality_centroid(reference_query + offset_query)
    centroid_target = modality_centroid(reference_target + offset_target)
    removed = (
        retrieval_ranks(
            remove_modality_gap(query + offset_query, centroid_query),
            remove_modality_gap(target + offset_target, centroid_target),
        )
        .double()
        .numpy()
    )
    without_gap = retrieval_ranks(query, target).double().numpy()
    assert removed.mean() == pytest.approx(without_gap.mean(), rel=0.2)
    assert retrieval_ranks(query + offset_query, target + offset_target).double().mean() > 3 * without_gap.mean()


def test_centroid_and_removal_by_formula():
    rows = torch.tensor([[3.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    mask = torch.tensor([True, True, False])
    centroid = modality_centroid(rows, mask)
    torch.testing.assert_close(centroid, torch.tensor([0.5, 0.5]))
    centred = remove_modality_gap(rows[:2], centroid)
    torch.testing.assert_close(centred, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]) / 2**0.5)
    assert torch.allclose(centred.norm(dim=-1), torch.ones(2))


def test_gap_removal_refuses_a_collapsed_modality_and_bad_shapes():
    collapsed = torch.ones(4, 3)
    with pytest.raises(ValueError, match="collapsed"):
        remove_modality_gap(collapsed, modality_centroid(collapsed))
    with pytest.raises(ValueError, match="centroid must be"):
        remove_modality_gap(torch.eye(3), torch.zeros(2))
    with pytest.raises(ValueError, match="no present row"):
        modality_centroid(torch.eye(3), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN or infinite"):
        modality_centroid(torch.full((2, 2), float("inf")))
