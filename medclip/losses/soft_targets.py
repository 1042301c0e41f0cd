"""Soft targets for InfoNCE, built block by block from per-sample data, and the loss that uses them.

A soft-target contrastive loss replaces CLIP's one-hot target (only the paired sample matches) with a distribution
over the candidates. Three sources are built in:

- ``LabelTargets``: similarity of the samples' label vectors (MedCLIP's semantic matching, Cardiac-CLIP's pathology
  vectors), NaN-aware;
- ``ContinuousTargets``: CWCL's continuous weights from the intra-modal similarity of a fixed embedding;
- ``PositiveSetTargets``: uniform mass on every sample of the same patient or with the identical label set.

Each source keeps O(B) per-sample data and hands the tiled engine (``medclip.losses.tiled``) a ``TargetWeights`` that
computes any (rows x columns) block of log weights on demand, so no (B, B) target matrix is ever built on the tiled
path. ``soft_target_loss`` applies one source to a pair of modalities with the masking and distributed convention of
``clip_loss``: per-sample data is gathered along with the features, so the targets of a row are computed against the
global batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..distributed import all_gather_no_grad, all_gather_with_grad
from ..types import present_rows
from .base import zero_loss_connected_to
from .distributed import check_pair_inputs, exact_global_value, global_rows
from .tiled import DEFAULT_TILE_SIZE, DEFAULT_TILED_ABOVE, TargetWeights, tiled_cross_entropy

NO_MASS = float("-inf")  # log weight of a candidate that receives no target mass


def _same_sample(row_index: Tensor, column_index: Tensor, rows: slice, columns: slice) -> Tensor:
    return row_index[rows, None] == column_index[None, columns]  # (r, c)


def _same_sample_positions(row_index: Tensor, column_index: Tensor) -> tuple[Tensor, Tensor]:
    """(row positions, column positions) of the pairs whose sample indices are equal; ``column_index`` sorted.

    O(r log c) instead of comparing a whole (r, c) block: a sample meets itself at most once per block.
    """
    if column_index.numel() == 0:
        return row_index.new_zeros(0), row_index.new_zeros(0)
    found = torch.searchsorted(column_index, row_index).clamp_max_(column_index.numel() - 1)  # (r,)
    hit = column_index[found] == row_index  # (r,)
    return hit.nonzero().squeeze(1), found[hit]


def _is_sorted(index: Tensor) -> bool:
    return bool((index[1:] >= index[:-1]).all()) if index.numel() > 1 else True


class LabelSimilarityWeights(TargetWeights):
    """log w_ij = cos(l_i, l_j) / temperature over the labels known for both samples (NaN = unknown).

    Cosine of two all-zero (known) vectors is 1 (both "no finding"), of one zero and one non-zero vector 0; a pair
    without any label known for both gets no target mass; a sample always gets the maximum weight 1 / temperature
    with its own pair (``max_log_weight``), so a sample without labels falls back to CLIP's one-hot target.

    When neither side has an unknown label the cosine of every pair is one matrix product of unit label vectors,
    each with one extra coordinate that is 1 for an all-zero vector (so two all-zero vectors score 1, and an all-zero
    against a non-zero vector 0); otherwise four small products give each pair's norms over the labels both know.
    """

    def __init__(
        self, row_labels: Tensor, column_labels: Tensor, row_index: Tensor, column_index: Tensor, temperature: float
    ) -> None:
        self.row_known, self.column_known = ~row_labels.isnan(), ~column_labels.isnan()  # (P, K), (V, K)
        self.row_values, self.column_values = row_labels.nan_to_num(0.0), column_labels.nan_to_num(0.0)
        self.row_index, self.column_index = row_index, column_index
        self.temperature = temperature
        self.own_pair_weight = 1.0 / temperature  # cos = 1
        self.max_log_weight = self.own_pair_weight
        self.num_rows, self.num_columns = row_labels.shape[0], column_labels.shape[0]
        self.indices_sorted = _is_sorted(column_index) and _is_sorted(row_index)
        # index ranges of the blocks, to skip looking for a sample's own pair in blocks that cannot hold one
        self._row_ids, self._column_ids = row_index.cpu().numpy(), column_index.cpu().numpy()  # (P,), (V,) int64
        self.all_known = bool(self.row_known.all()) and bool(self.column_known.all())
        if self.all_known:  # (P, K + 1), (V, K + 1): unit vectors, the extra coordinate flags an all-zero vector
            self.row_units = self._units(self.row_values) / temperature
            self.column_units = self._units(self.column_values)

    def _may_share_samples(self, rows: slice, columns: slice) -> bool:
        """Whether the sorted sample indices of ``rows`` and ``columns`` overlap (so a sample may meet itself)."""
        row_ids, column_ids = self._row_ids[rows], self._column_ids[columns]
        if not (len(row_ids) and len(column_ids)):
            return False
        return bool(row_ids[0] <= column_ids[-1] and column_ids[0] <= row_ids[-1])

    @staticmethod
    def _units(values: Tensor) -> Tensor:
        norms = values.norm(dim=1, keepdim=True)  # (N, 1)
        zero = norms == 0
        return torch.cat([values / norms.masked_fill(zero, 1.0), zero.to(values.dtype)], dim=1)  # (N, K + 1)

    def block(self, rows: slice, columns: slice) -> Tensor:
        if self.all_known:
            similarity = self.row_units[rows] @ self.column_units[columns].T  # (r, c), already / temperature
        else:
            similarity = self._partially_known_block(rows, columns)
        if self.indices_sorted:
            if self._may_share_samples(rows, columns):
                row_hits, column_hits = _same_sample_positions(self.row_index[rows], self.column_index[columns])
                similarity[row_hits, column_hits] = self.own_pair_weight
        else:
            same = _same_sample(self.row_index, self.column_index, rows, columns)
            similarity = similarity.masked_fill_(same, self.own_pair_weight)
        return similarity

    def _partially_known_block(self, rows: slice, columns: slice) -> Tensor:
        """cos / temperature over the labels known for both: three small products and four passes over the block.

        With ``n`` the number of labels known for both, a tiny ``eps`` (``sqrt`` of the dtype's smallest normal,
        times 16) is added as ``eps * n`` to the dot product and to both norms. Then two all-zero vectors score
        ``eps n / sqrt((eps n)^2) = 1``, an all-zero against a non-zero vector ``sqrt(eps n / |l|^2) < 1e-8`` (0 up to
        rounding), other pairs their cosine up to O(eps), and a pair with nothing known in common ``0 / 0 = NaN``,
        which becomes "no mass". The special cases cost no pass of their own.
        """
        values_r, values_c = self.row_values[rows], self.column_values[columns]  # (r, K), (c, K)
        known_r, known_c = self.row_known[rows].to(values_r.dtype), self.column_known[columns].to(values_r.dtype)
        eps = torch.finfo(values_r.dtype).tiny ** 0.5 * 16
        root = eps**0.5
        # (r, 2K) @ (2K, c): (dot + eps n) / temperature; unknown entries are 0, so only shared labels count
        similarity = (
            torch.cat([values_r, root * known_r], dim=1).div_(self.temperature)
            @ torch.cat([values_c, root * known_c], dim=1).T
        )
        norm_r = (values_r * values_r + eps * known_r) @ known_c.T  # (r, c) |l_i|^2 + eps n over labels j knows
        norm_c = known_r @ (values_c * values_c + eps * known_c).T  # (r, c)
        similarity.mul_(norm_r.mul_(norm_c).rsqrt_())  # 0 * inf = NaN exactly where n = 0
        return similarity.nan_to_num_(nan=NO_MASS, posinf=float("inf"), neginf=NO_MASS)


class CosineWeights(TargetWeights):
    """log w_ij = log((1 + cos(f_i, f_j)) / 2) for fixed (detached) embeddings f, CWCL's continuous weights."""

    max_log_weight = 0.0  # log((1 + 1) / 2): a sample's own pair

    def __init__(self, row_features: Tensor, column_features: Tensor) -> None:
        self.row_features, self.column_features = row_features, column_features  # (P, D), (V, D) unit rows
        self.num_rows, self.num_columns = row_features.shape[0], column_features.shape[0]

    def block(self, rows: slice, columns: slice) -> Tensor:
        cosine = self.row_features[rows] @ self.column_features[columns].T  # (r, c)
        return ((1 + cosine.clamp(-1.0, 1.0)) / 2).log()


class PositiveSetWeights(TargetWeights):
    """log w_ij = 0 for positives (same sample, same patient, or identical known label set), -inf otherwise."""

    max_log_weight = 0.0  # every sample is its own positive

    def __init__(
        self,
        row_index: Tensor,
        column_index: Tensor,
        row_patients: Tensor | None,
        column_patients: Tensor | None,
        row_labels: Tensor | None,
        column_labels: Tensor | None,
    ) -> None:
        self.row_index, self.column_index = row_index, column_index
        self.row_patients, self.column_patients = row_patients, column_patients
        self.row_labels, self.column_labels = row_labels, column_labels
        self.num_rows, self.num_columns = row_index.shape[0], column_index.shape[0]

    def block(self, rows: slice, columns: slice) -> Tensor:
        positive = _same_sample(self.row_index, self.column_index, rows, columns)  # (r, c)
        if self.row_patients is not None:
            positive |= self.row_patients[rows, None] == self.column_patients[None, columns]
        if self.row_labels is not None:
            labels_r, labels_c = self.row_labels[rows, None], self.column_labels[None, columns]  # (r, 1, K), (1, c, K)
            equal = (labels_r == labels_c) | (labels_r.isnan() & labels_c.isnan())  # (r, c, K)
            any_known = ~self.row_labels[rows].isnan().all(dim=1)  # (r,) a set of unknowns proves nothing
            positive |= equal.all(dim=2) & any_known[:, None]
        zeros = torch.zeros(positive.shape, device=positive.device)  # (r, c) log weight 0: equal mass on positives
        return zeros.masked_fill(~positive, NO_MASS)


class SampleTargets:
    """Per-sample data (local rows) from which ``TargetWeights`` between any two sets of samples are built.

    Attributes:
        symmetric: the weights do not depend on the query modality and w_ij == w_ji, so in one process both
            directions of the loss read the same blocks (half the target work).
    """

    symmetric = False

    def gathered(self) -> SampleTargets:
        """The same source over the global batch (every process's rows, rank order); a collective."""
        raise NotImplementedError

    def weights(self, query: str, row_index: Tensor, column_index: Tensor) -> TargetWeights:
        """Weights for queries of modality ``query`` ("a" or "b") at sample indices ``row_index`` against the
        candidates of the other modality at ``column_index``."""
        raise NotImplementedError


class LabelTargets(SampleTargets):
    """Targets from label-vector similarity (see ``LabelSimilarityWeights``); labels: (B, K), NaN = unknown."""

    symmetric = True  # cosine similarity, whichever modality asks

    def __init__(self, labels: Tensor, temperature: float = 1.0) -> None:
        if labels.dim() != 2:
            raise ValueError(f"labels must be (B, K), got shape {tuple(labels.shape)}")
        if temperature <= 0:
            raise ValueError(f"label temperature must be > 0, got {temperature}")
        self.labels, self.temperature = labels.detach(), temperature

    def gathered(self) -> LabelTargets:
        return LabelTargets(all_gather_no_grad(self.labels), self.temperature)  # (N, K)

    def weights(self, query: str, row_index: Tensor, column_index: Tensor) -> TargetWeights:
        return LabelSimilarityWeights(
            self.labels[row_index], self.labels[column_index], row_index, column_index, self.temperature
        )


class ContinuousTargets(SampleTargets):
    """CWCL targets: the candidates' modality's fixed embeddings, compared among themselves.

    For queries of modality a, candidate b_j's weight is the similarity of b_j to the query's own partner b_i (and
    symmetrically), from embeddings the loss does not differentiate through.
    """

    def __init__(self, embeddings_a: Tensor, embeddings_b: Tensor) -> None:
        self.embeddings = {"a": embeddings_a.detach(), "b": embeddings_b.detach()}

    def gathered(self) -> ContinuousTargets:
        return ContinuousTargets(all_gather_no_grad(self.embeddings["a"]), all_gather_no_grad(self.embeddings["b"]))

    def weights(self, query: str, row_index: Tensor, column_index: Tensor) -> TargetWeights:
        candidates = self.embeddings["b" if query == "a" else "a"]  # (N, D)
        return CosineWeights(candidates[row_index], candidates[column_index])


class PositiveSetTargets(SampleTargets):
    """Multi-positive targets: same patient (int64 keys, ``medclip.model.patient_keys``) and/or same label set."""

    symmetric = True  # same sample / patient / label set are symmetric relations

    def __init__(self, patient_ids: Tensor | None, labels: Tensor | None) -> None:
        self.patient_ids = patient_ids.detach() if patient_ids is not None else None
        self.labels = labels.detach() if labels is not None else None

    def gathered(self) -> PositiveSetTargets:
        patients = all_gather_no_grad(self.patient_ids) if self.patient_ids is not None else None
        labels = all_gather_no_grad(self.labels) if self.labels is not None else None
        return PositiveSetTargets(patients, labels)

    def weights(self, query: str, row_index: Tensor, column_index: Tensor) -> TargetWeights:
        def pick(data: Tensor | None, index: Tensor) -> Tensor | None:
            return None if data is None else data[index]

        return PositiveSetWeights(
            row_index,
            column_index,
            pick(self.patient_ids, row_index),
            pick(self.patient_ids, column_index),
            pick(self.labels, row_index),
            pick(self.labels, column_index),
        )


def plain_soft_cross_entropy(
    rows: Tensor, columns: Tensor, scale: Tensor, row_targets: TargetWeights, column_targets: TargetWeights | None
) -> Tensor:
    """The same sum as ``tiled_cross_entropy`` with materialised (P, V) logits and targets (small batches)."""
    everything_rows, everything_columns = slice(0, rows.shape[0]), slice(0, columns.shape[0])
    logits = scale * rows @ columns.T  # (P, V)
    targets = row_targets.block(everything_rows, everything_columns).to(logits.dtype).softmax(dim=1)  # (P, V)
    total = (logits.logsumexp(dim=1) - (targets * logits).sum(dim=1)).sum()
    if column_targets is not None:
        column_weights = column_targets.block(everything_columns, everything_rows).to(logits.dtype)  # (V, P)
        column_probabilities = column_weights.softmax(dim=1)
        total = total + (logits.T.logsumexp(dim=1) - (column_probabilities * logits.T).sum(dim=1)).sum()
    return total


def _cross_entropy(
    rows: Tensor,
    columns: Tensor,
    scale: Tensor,
    row_targets: TargetWeights,
    column_targets: TargetWeights | None,
    tiled: bool,
    tile_size: int,
) -> Tensor:
    if not tiled:
        return plain_soft_cross_entropy(rows, columns, scale, row_targets, column_targets)
    return tiled_cross_entropy(
        rows,
        columns,
        scale,
        row_targets=row_targets,
        column_targets=column_targets,
        symmetric=column_targets is not None,
        tile_size=tile_size,
    )


def soft_target_loss(
    features_a: Tensor,
    features_b: Tensor,
    logit_scale: Tensor,
    targets: SampleTargets,
    mask: Tensor | None = None,
    distributed: bool = True,
    tile_size: int = DEFAULT_TILE_SIZE,
    tiled_above: int = DEFAULT_TILED_ABOVE,
) -> Tensor:
    """Symmetric InfoNCE with soft targets: mean over valid rows and both directions of the cross-entropy between
    ``targets``' distribution and the softmax of the logits.

    Args:
        features_a: (B, D) L2-normalised embeddings of one modality.
        features_b: (B, D) the other modality's, row i paired with row i of ``features_a``.
        logit_scale: scalar inverse temperature.
        targets: the per-sample target source (labels, fixed embeddings, patient keys); gathered with the features.
        mask: (B,) bool, True where both modalities are present; other rows are neither queries nor candidates.
        distributed: use every process's rows as candidates (the convention of ``medclip.losses.clip``).
        tile_size: block edge of the tiled path.
        tiled_above: use the tiled O(B * D)-memory path when the global number of valid rows exceeds this.

    Returns:
        A scalar: the loss on the global batch (a zero connected to the inputs when no row is valid anywhere).
    """

    mask = check_pair_inputs(features_a, features_b, mask)
    all_masks, offset, use_distributed = global_rows(features_a, mask, distributed)  # (N,)
    num_valid = int(all_masks.sum())
    if num_valid == 0:  # decided from global counts, so every process takes this branch together
        return zero_loss_connected_to(features_a, features_b, logit_scale)
    source = targets.gathered() if use_distributed else targets
    tiled = num_valid > tiled_above
    scale = logit_scale.to(features_a.dtype)
    local = present_rows(mask)  # (P,)
    if not use_distributed:  # square: one pass serves both directions
        row_targets = source.weights("a", local, local)
        column_targets = row_targets if source.symmetric else source.weights("b", local, local)
        # every row present (the usual case): the features themselves, no (B, D) copies
        rows, columns = (features_a, features_b) if num_valid == len(mask) else (features_a[local], features_b[local])
        total = _cross_entropy(rows, columns, scale, row_targets, column_targets, tiled, tile_size)
        return total / (2 * num_valid)
    all_a, all_b = all_gather_with_grad(features_a), all_gather_with_grad(features_b)  # (N, D)
    columns = present_rows(all_masks)  # (V,) global indices of the valid candidates
    row_index = local + offset  # (P,) global indices of the local queries
    a_to_b = _cross_entropy(
        features_a[local], all_b[columns], scale, source.weights("a", row_index, columns), None, tiled, tile_size
    )
    b_to_a = _cross_entropy(
        features_b[local], all_a[columns], scale, source.weights("b", row_index, columns), None, tiled, tile_size
    )
    return exact_global_value((a_to_b + b_to_a) / (2 * num_valid), use_distributed)
