"""Gradient caching (GradCache, Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup"): a contrastive batch far larger than the encoders' activations allow, with the same gradients.

A contrastive loss couples every row of the batch, so the batch cannot simply be split into accumulation steps (each
step would see fewer negatives). GradCache splits the *encoder* work instead:

1. embed the batch chunk by chunk without an autograd graph, recording each chunk's RNG state (dropout, augmenting
   encoders);
2. compute the loss on the concatenated embeddings, made leaves, and backpropagate it to them: the "gradient cache",
   O(B x D) memory;
3. re-run each chunk with its RNG state restored and the graph on, and backpropagate the cached gradient of that
   chunk's embeddings through the encoders; parameter gradients accumulate over chunks.

The gradients equal those of one forward/backward over the whole batch whenever the encoders treat rows independently
(no BatchNorm in train mode: its batch statistics would be per chunk, and its running statistics are updated twice).
Costs: one extra encoder forward pass per step. Under DistributedDataParallel the re-runs of all but the last chunk
run under ``no_sync()``, so gradients are all-reduced once per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn


def batch_rows(batch: Mapping[str, Any]) -> int:
    """Number of samples in a collated batch (its ``batch_size`` entry, else the length of a mask)."""
    if "batch_size" in batch:
        return int(batch["batch_size"])
    for key, value in batch.items():
        if key.endswith("_mask") and isinstance(value, Tensor):
            return value.shape[0]
    raise ValueError("cannot tell the batch size: the batch has no 'batch_size' entry and no '<modality>_mask'")


def slice_batch(value: Any, start: int, stop: int, rows: int) -> Any:
    """Rows ``[start, stop)`` of every per-sample entry (tensors with ``rows`` rows, lists of ``rows`` items)."""
    if isinstance(value, Tensor):
        return value[start:stop] if value.dim() > 0 and value.shape[0] == rows else value
    if isinstance(value, dict):
        sliced = {key: slice_batch(item, start, stop, rows) for key, item in value.items()}
        if "batch_size" in value:
            sliced["batch_size"] = stop - start
        return sliced
    if isinstance(value, list | tuple) and len(value) == rows:
        return type(value)(value[start:stop])
    return value


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _pad_tokens(tokens: Tensor, length: int) -> Tensor:
    if tokens.shape[1] == length:
        return tokens
    padding = tokens.new_zeros(tokens.shape[0], length - tokens.shape[1], *tokens.shape[2:])
    return torch.cat([tokens, padding], dim=1)  # (B, length, ...)


def merge_outputs(chunks: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Concatenate ``ContrastiveModel.forward`` outputs of consecutive chunks into the outputs of the whole batch.

    Token sequences are padded to the longest chunk's (padding masked out); a chunk without any row of a modality
    that has tokens elsewhere gets all-padding tokens.
    """
    merged: dict[str, Any] = {}
    for key in ("features", "masks"):
        names = list(dict.fromkeys(name for chunk in chunks for name in chunk[key]))
        merged[key] = {name: torch.cat([chunk[key][name] for chunk in chunks]) for name in names}
    merged["tokens"], merged["token_masks"] = {}, {}
    for name in dict.fromkeys(name for chunk in chunks for name in chunk["tokens"]):
        present = [chunk["tokens"][name] for chunk in chunks if name in chunk["tokens"]]
        length, trailing = max(tokens.shape[1] for tokens in present), present[0].shape[2:]
        parts, mask_parts = [], []
        for chunk, size in zip(chunks, sizes, strict=True):
            if name in chunk["tokens"]:
                parts.append(_pad_tokens(chunk["tokens"][name], length))
                mask_parts.append(_pad_tokens(chunk["token_masks"][name], length))
            else:
                parts.append(present[0].new_zeros(size, length, *trailing))  # (b, T, D) all padding
                mask_parts.append(torch.zeros(size, length, dtype=torch.bool, device=present[0].device))
        merged["tokens"][name], merged["token_masks"][name] = torch.cat(parts), torch.cat(mask_parts)
    for key in ("labels", "patient_ids"):
        values = [chunk.get(key) for chunk in chunks]
        merged[key] = None if any(value is None for value in values) else torch.cat(values)
    merged["logit_scale"] = chunks[0]["logit_scale"]
    for key in chunks[0]:  # outputs a subclass adds, passed through from the first chunk only if not per-row
        merged.setdefault(key, chunks[0][key])
    return merged


class GradCache:
    """One training micro-step of ``model`` + ``criterion`` on a batch, embedded ``chunk_size`` rows at a time.

    Args:
        model: the ``ContrastiveModel`` (or its DistributedDataParallel wrapper) mapping a batch to loss inputs.
        criterion: the loss module (``CombinedLoss``); its own parameters get their gradients from step 2.
        chunk_size: rows per encoder pass (the activation memory of one pass).
        forward_context: a fresh context manager per encoder pass (e.g. bf16 autocast).
        convert: applied to each pass's outputs before the loss (e.g. casting to float32).
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        chunk_size: int,
        forward_context: Callable[[], AbstractContextManager] = nullcontext,
        convert: Callable[[dict[str, Any]], dict[str, Any]] = lambda outputs: outputs,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"grad cache chunk size must be >= 1, got {chunk_size}")
        self.model, self.criterion, self.chunk_size = model, criterion, chunk_size
        self.forward_context, self.convert = forward_context, convert

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def step(
        self, batch: Mapping[str, Any], loss_scale: float = 1.0, extra_outputs: Mapping[str, Any] | None = None
    ) -> dict[str, Tensor]:
        """Accumulate into ``.grad`` the gradients of ``loss_scale * criterion(model(batch))["loss"]``.

        ``extra_outputs``: more loss inputs for the whole batch, without gradient (the EMA teacher's embeddings).

        Returns:
            The loss entries (detached), as ``criterion`` returns them.
        """
        device = self._device()
        rows = batch_rows(batch)
        bounds = [(start, min(start + self.chunk_size, rows)) for start in range(0, rows, self.chunk_size)]
        chunks = [slice_batch(dict(batch), start, stop, rows) for start, stop in bounds]
        # 1. embed without a graph, remembering each chunk's RNG state
        states, cached = [], []
        for chunk in chunks:
            states.append(_rng_state(device))
            with torch.no_grad(), self.forward_context():
                cached.append(self.convert(self.model(chunk)))
        outputs = merge_outputs(cached, [stop - start for start, stop in bounds])
        # 2. the loss on leaf copies of the embeddings: the gradient cache
        leaves = {
            "features": {name: value.detach().requires_grad_() for name, value in outputs["features"].items()},
            "tokens": {name: value.detach().requires_grad_() for name, value in outputs["tokens"].items()},
            "logit_scale": outputs["logit_scale"].detach().requires_grad_(),
        }
        losses = self.criterion(**{**outputs, **(extra_outputs or {}), **leaves})
        (losses["loss"] * loss_scale).backward()
        after_loss = _rng_state(device)
        # 3. re-run every chunk with its RNG state and push the cached gradients through the encoders
        no_sync = getattr(self.model, "no_sync", None)
        for index, ((start, stop), chunk, state) in enumerate(zip(bounds, chunks, states, strict=True)):
            last = index == len(chunks) - 1
            context = no_sync() if (no_sync is not None and not last) else nullcontext()
            with context:  # DDP: forward and backward of every chunk but the last without gradient all-reduce
                self._rerun(chunk, state, device, leaves, start, stop, last)
        _set_rng_state(after_loss, device)
        return {key: value.detach() for key, value in losses.items()}

    def _rerun(
        self,
        chunk: dict[str, Any],
        state: tuple[Tensor, Tensor | None],
        device: torch.device,
        leaves: dict[str, Any],
        start: int,
        stop: int,
        last: bool,
    ) -> None:
        """Re-embed one chunk with its recorded RNG state and backpropagate its slice of the cached gradients."""
        _set_rng_state(state, device)
        with self.forward_context():
            rerun = self.convert(self.model(chunk))
        tensors, gradients = [], []
        for key in ("features", "tokens"):
            for name, value in rerun[key].items():
                grad = leaves[key][name].grad
                if grad is None or not value.requires_grad:
                    continue
                grad = grad[start:stop]
                tensors.append(value)
                gradients.append(grad[:, : value.shape[1]] if key == "tokens" else grad)
        if last and leaves["logit_scale"].grad is not None and rerun["logit_scale"].requires_grad:
            tensors.append(rerun["logit_scale"])  # the scale is shared by every chunk: its gradient goes once
            gradients.append(leaves["logit_scale"].grad)
        if tensors:
            torch.autograd.backward(tensors, gradients)
        elif last:  # nothing to backpropagate; DDP still needs one backward after a synced forward
            torch.autograd.backward(_connected_zero(self.model))


def _connected_zero(model: nn.Module) -> Tensor:
    return sum(parameter.reshape(-1)[:0].sum() for parameter in model.parameters() if parameter.requires_grad)
