"""Validation during training: is the model learning something that holds on patients it never saw?

A contrastive model can drive its training loss down by memorising its training studies; only held-out patients
show whether it generalises. Every ``train.val_every`` steps the ``Validator`` embeds the validation rows (and, for
comparison, an equally large fixed subset of training rows) and reports:

- ``val/loss``: the training loss computed on validation batches of the training batch size;
- ``val/<a>-><b>/R@1`` and ``R@5`` in both directions for every pair of modalities, on the rows that have both,
  with ``val/chance/R@k`` (= k / rows) beside them: a model at chance has learnt nothing that transfers;
- ``train/<a>-><b>/R@1`` etc. on the training subset: a large train/validation gap is memorisation, made visible;
- ``val/health/...``: the embedding-health scalars (modality gap, uniformity, effective rank; ``eval.diagnostics``);
- ``val/probe/<modality>/<finding>/auroc`` and ``val/probe/<modality>/macro_auroc`` when the manifest has
  ``label:<finding>`` columns: a logistic regression fitted on the training subset's embeddings, scored on the
  validation patients (``eval.validation_probe``): whether each tower carries the findings, a finer signal than R@1.

Every process embeds its share of the rows; the features are gathered so all processes compute the same metrics
(early stopping must be decided alike everywhere). The training loop knows none of this: the recipe hands it a
``make_validator(model, criterion, extra_loss_inputs)`` factory (``medclip/train`` and ``medclip/eval`` never import
each other).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..data import is_empty_batch
from ..data.loader import make_loader
from ..device import autocast_context, move_to_device, outputs_to_float32
from .retrieval import recall_at_k
from .validation_probe import label_probe_metrics

RECALL_KS = (1, 5)
MAX_TRAIN_ROWS = 2048  # the training subset compared with validation is capped (memorisation shows long before)
MAX_PROBE_ROWS = 256  # training rows embedded for the label probes (retrieval uses len(val) of them) ...
PROBE_ROWS_PER_VAL_ROW = 4  # ... and at most 4 per validation row: the probes must not dominate a validation's cost


class Validator:
    """Validation metrics of a model on held-out rows, and on a training subset of the same size.

    Args:
        model: the (possibly DDP/FSDP-wrapped) model; called as in training, in eval mode and without gradients.
        criterion: the training loss (its ``"loss"`` entry is averaged over validation batches).
        val_dataset: the validation rows, with evaluation transforms.
        train_dataset: the training rows; a fixed subset as large as the validation set is embedded for comparison.
            Training transforms are left as they are: augmentation makes this subset a little harder than training.
        collate: samples -> batch.
        batch_size: rows per batch (the training batch size, so ``val/loss`` compares with the training loss).
        runtime: process layout (anything with ``rank``, ``world_size``, ``distributed`` and ``device``).
        precision: autocast precision ("auto" | "fp32" | "bf16").
        num_workers: loader workers.
        worker_kind: "process" or "thread".
        seed: fixes the training subset.
        extra_loss_inputs: batch -> loss inputs the model's outputs lack (the EMA teacher's features).
        label_names: the manifest's findings (``label:<finding>`` columns); when given, a larger training subset
            (up to ``MAX_PROBE_ROWS``, 4 per validation row) is embedded and the label probes run on it.
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        val_dataset: Dataset,
        train_dataset: Dataset,
        collate: Callable[[list], dict[str, Any]],
        batch_size: int,
        runtime: Any,
        precision: str = "auto",
        num_workers: int = 0,
        worker_kind: str = "process",
        seed: int = 0,
        extra_loss_inputs: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
        label_names: Sequence[str] = (),
    ) -> None:
        self.model, self.criterion, self.collate = model, criterion, collate
        # Loss inputs the model's own outputs lack (the EMA teacher's features for `distill`), from the trainer.
        self.extra_loss_inputs = extra_loss_inputs
        self.batch_size, self.runtime, self.precision = batch_size, runtime, precision
        self.num_workers, self.worker_kind = num_workers, worker_kind
        self.val_dataset = val_dataset
        self.label_names = tuple(label_names)
        size = min(len(val_dataset), len(train_dataset), MAX_TRAIN_ROWS)
        probe_rows = min(len(train_dataset), MAX_PROBE_ROWS, PROBE_ROWS_PER_VAL_ROW * len(val_dataset))
        probe_size = max(size, probe_rows) if self.label_names else size
        order = np.random.default_rng(seed).permutation(len(train_dataset))[:probe_size]
        self.train_subset = Subset(train_dataset, sorted(int(index) for index in order[:size]))  # retrieval, probes
        self.probe_extra = Subset(train_dataset, sorted(int(index) for index in order[size:]))  # probes only

    @torch.no_grad()
    def __call__(self) -> dict[str, float]:
        """One validation pass; returns the flat metrics (identical on every process)."""
        was_training = self.model.training
        self.model.eval()
        try:
            val_features, val_masks, val_labels, val_loss = self._embed(self.val_dataset, with_loss=True)
            train_features, train_masks, train_labels, _ = self._embed(self.train_subset, with_loss=False)
            extra = self._embed(self.probe_extra, with_loss=False) if len(self.probe_extra) else None
        finally:
            self.model.train(was_training)
        metrics: dict[str, float] = {"val/loss": val_loss, "val/rows": float(_rows(val_masks))}
        metrics.update(pair_recalls(val_features, val_masks, "val"))
        # retrieval among as many training rows as there are validation rows: the same chance level
        metrics.update(pair_recalls(train_features, train_masks, "train"))
        metrics.update(_health(val_features, val_masks))
        if self.label_names:
            if extra is not None:  # the probes fit on every embedded training row
                train_features, train_masks = _merge([train_features, extra[0]]), _merge([train_masks, extra[1]])
                train_labels = np.concatenate([train_labels, extra[2]])
            metrics.update(
                label_probe_metrics(
                    train_features, train_masks, train_labels, val_features, val_masks, val_labels, self.label_names
                )
            )
        return metrics

    def _embed(
        self, dataset: Dataset, with_loss: bool
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, float]:
        """Every process embeds its share of ``dataset``; returns the gathered features, presence masks, labels
        ((N, K), NaN = unknown; (N, 0) without label columns) and mean loss, rows in ``dataset`` order.

        Shares are padded to equal length (repeating a row, removed again by row number), so every process runs the
        same number of forwards: FSDP's forward is a collective that all processes must enter together.
        """
        rank, world = self.runtime.rank, self.runtime.world_size
        indices = list(range(rank, len(dataset), world))
        longest = -(-len(dataset) // world)
        if indices and len(indices) < longest:
            indices += [indices[-1]] * (longest - len(indices))
        loader = make_loader(
            Subset(dataset, indices),
            batch_size=self.batch_size,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            worker_kind=self.worker_kind,
        )
        rows: list[int] = []
        features: dict[str, list[np.ndarray]] = {}
        masks: dict[str, list[np.ndarray]] = {}
        labels: list[np.ndarray] = []
        loss_sum, loss_batches = 0.0, 0
        for batch in loader:
            if is_empty_batch(batch):  # every row failed to load; the others' forwards would wait (FSDP): rare
                continue
            batch = move_to_device(dict(batch), self.runtime.device)
            outputs = self._forward(batch)
            rows.extend(int(row) for row in batch["row"])
            labels.append(_batch_labels(batch, len(batch["row"]), len(self.label_names)))  # (B, K)
            for name, value in outputs["features"].items():
                features.setdefault(name, []).append(value.float().cpu().numpy())  # (B, D)
                masks.setdefault(name, []).append(outputs["masks"][name].cpu().numpy().astype(bool))  # (B,)
            if with_loss:
                extra = self.extra_loss_inputs(batch) if self.extra_loss_inputs is not None else {}
                value = float(self.criterion(**outputs_to_float32(outputs), **extra)["loss"])
                if math.isfinite(value):
                    loss_sum, loss_batches = loss_sum + value, loss_batches + 1
        local = (
            rows,
            {name: np.concatenate(parts) for name, parts in features.items()},
            {name: np.concatenate(parts) for name, parts in masks.items()},
            np.concatenate(labels) if labels else np.zeros((0, len(self.label_names)), np.float32),
            (loss_sum, loss_batches),
        )
        gathered = _gather(local, self.runtime)
        all_rows = np.asarray([row for part in gathered for row in part[0]], dtype=np.int64)
        _, first = np.unique(all_rows, return_index=True)  # each row once (padding repeats removed)
        keep = np.sort(first)
        merged_features = {name: value[keep] for name, value in _merge([part[1] for part in gathered]).items()}
        merged_masks = {name: value[keep] for name, value in _merge([part[2] for part in gathered]).items()}
        merged_labels = np.concatenate([part[3] for part in gathered])[keep]  # (N, K)
        total = sum(part[4][0] for part in gathered)
        count = sum(part[4][1] for part in gathered)
        return merged_features, merged_masks, merged_labels, (total / count if count else float("nan"))

    def _forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        batch = move_to_device(dict(batch), self.runtime.device)
        with autocast_context(self.precision, self.runtime.device):
            return self.model(batch)


def _batch_labels(batch: Mapping[str, Any], rows: int, label_count: int) -> np.ndarray:
    """The batch's (B, K) labels as float32 numpy; all NaN when the batch carries none."""
    labels = batch.get("labels")
    if labels is None or label_count == 0:
        return np.full((rows, label_count), np.nan, dtype=np.float32)
    return labels.float().cpu().numpy()  # (B, K)


def _gather(local: Any, runtime: Any) -> list[Any]:
    """Every process's ``local`` (small numpy data), in rank order; just ``[local]`` in a single process."""
    if not runtime.distributed:
        return [local]
    parts: list[Any] = [None] * runtime.world_size
    torch.distributed.all_gather_object(parts, local)
    return parts


def _merge(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    names = [name for part in parts for name in part]
    return {name: np.concatenate([part[name] for part in parts if name in part]) for name in dict.fromkeys(names)}


def _rows(masks: Mapping[str, np.ndarray]) -> int:
    return max((len(mask) for mask in masks.values()), default=0)


def pair_recalls(
    features: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], prefix: str, ks: Sequence[int] = RECALL_KS
) -> dict[str, float]:
    """Recall@K both ways for every pair of modalities on the rows with both, and the chance level k / rows.

    Also ``{prefix}/mean_R@1``: the mean of every direction's R@1 (the default metric for the best checkpoint).
    """
    metrics: dict[str, float] = {}
    firsts: list[float] = []
    for a, b in itertools.combinations(sorted(features), 2):
        both = masks[a] & masks[b]  # (N,)
        rows = int(both.sum())
        if rows < 2:
            continue
        query, target = torch.from_numpy(features[a][both]), torch.from_numpy(features[b][both])
        for source, destination, left, right in ((a, b, query, target), (b, a, target, query)):
            for name, value in recall_at_k(left, right, ks).items():
                metrics[f"{prefix}/{source}->{destination}/{name}"] = value
            firsts.append(metrics[f"{prefix}/{source}->{destination}/R@1"])
        for k in ks:
            metrics[f"{prefix}/{a}-{b}/chance/R@{k}"] = min(1.0, k / rows)
        metrics[f"{prefix}/{a}-{b}/rows"] = float(rows)
    if firsts:
        metrics[f"{prefix}/mean_R@1"] = float(np.mean(firsts))
    return metrics


def _health(features: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Embedding-health scalars of the validation embeddings (modality gap, uniformity, effective rank)."""
    from .diagnostics import embedding_health, health_scalars

    if not features or _rows(masks) < 2:
        return {}
    return health_scalars(embedding_health(features, masks), prefix="val/health")
