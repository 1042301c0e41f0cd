"""Fine-tuning an encoder with a classification head: the upper bound next to frozen-embedding probes.

The probe asks what a frozen embedding already knows; fine-tuning asks what the pretrained encoder can learn. The
model is copied (the checkpoint's weights are never changed), a linear head maps the shared embedding to the
findings, and both train with the registered ``classification`` loss (``medclip.losses.classification``):
cross-entropy (multi-class) or a per-finding binary cross-entropy that ignores unknown (NaN) labels.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import is_empty_batch
from ..device import move_to_device
from ..losses import build_loss
from ..model import select_rows
from ..types import present_rows


class FineTunedClassifier(nn.Module):
    """A copy of a contrastive model's encoder for one modality plus a linear head on its embedding."""

    def __init__(self, model: nn.Module, modality: str, n_findings: int) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)
        self.modality = modality
        self.head = nn.Linear(self.model._embed_dim(modality), n_findings)

    def embed(self, inputs: Any) -> Tensor:
        return self.model.encode(self.modality, inputs)  # (B, D) unit vectors

    def forward(self, inputs: Any) -> Tensor:
        return self.head(self.embed(inputs))  # (B, K) logits


def finetune(
    model: nn.Module,
    dataset: Any,
    modality: str,
    label_columns: Sequence[int],
    mode: str,
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[FineTunedClassifier, dict[str, float]]:
    """Fine-tune encoder + head on the training dataset for ``steps`` optimizer steps.

    Args:
        model: the pretrained ``ContrastiveModel`` (copied, not modified).
        dataset: a ``ManifestDataset`` of the training rows with training transforms.
        modality: the modality to classify.
        label_columns: indices of the evaluated findings in the manifest's labels.
        mode: "binary" or "multiclass" (the ``classification`` loss's modes).
        steps: optimizer steps.
        lr: AdamW learning rate; small, to adapt rather than overwrite the pretrained encoder.
        batch_size: rows per step.
        seed: seeds the head initialisation and the data order.
        device: where to train.
        progress: show a progress bar.

    Returns:
        ``(classifier in eval mode, {"final_loss": ...})``.
    """
    torch.manual_seed(seed)
    classifier = FineTunedClassifier(model, modality, len(label_columns)).to(device).train()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=0.01)
    criterion = build_loss({"classification": {"mode": mode}})
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=dataset.collate_fn,
        generator=generator,
        drop_last=len(dataset) > batch_size,
    )
    columns = torch.as_tensor(list(label_columns), dtype=torch.long)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    loss_value = float("nan")
    for _ in tqdm(range(steps), desc="fine-tuning", disable=not progress):
        batch = next(batches)
        while is_empty_batch(batch):
            batch = next(batches)
        rows = present_rows(batch[f"{modality}_mask"])  # placeholders of missing rows never reach the encoder
        inputs = move_to_device(select_rows(batch[modality], rows), device)
        labels = batch["labels"][rows][:, columns].to(device)  # (P, K)
        loss = criterion(logits=classifier(inputs), labels=labels)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
    return classifier.eval(), {"final_loss": loss_value, "steps": float(steps)}
