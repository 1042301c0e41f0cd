"""Zero-shot classification: compare query embeddings (scans, cells, ECGs) with embedded class prompts.

Each class is described by one or more text prompts ("a chest CT showing a pleural effusion", "pleural effusion
present", ...). Averaging several prompts per class (prompt ensembling, as in CLIP) makes the class embedding less
sensitive to the wording of any single prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _as_float_tensor(values: Any, name: str) -> Tensor:
    tensor = torch.as_tensor(values)
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return tensor


def class_embeddings(prompt_embeddings: Tensor | Sequence[Tensor], prompts_per_class: int = 1) -> Tensor:
    """One unit-norm embedding per class from the embeddings of its prompts.

    Prompts are normalised before averaging so every prompt weighs the same whatever its norm, and the mean is
    normalised again because zero-shot scores are cosine similarities.

    Args:
        prompt_embeddings: one of
            - a list with one (P_c, D) tensor per class (classes may have different numbers of prompts);
            - a (C, P, D) tensor;
            - a (C * P, D) tensor in class-major order (the P prompts of class 0 first), with ``prompts_per_class``
              giving P (the default 1 means one prompt per class).
        prompts_per_class: P for the flat (C * P, D) layout.

    Returns:
        (C, D) unit-norm class embeddings.
    """
    if isinstance(prompt_embeddings, Sequence) and not isinstance(prompt_embeddings, Tensor):
        if len(prompt_embeddings) == 0:
            raise ValueError("no classes given: prompt_embeddings is an empty list")
        per_class = []
        for index, prompts in enumerate(prompt_embeddings):
            prompts = _as_float_tensor(prompts, f"prompt embeddings of class {index}")
            if prompts.ndim == 1:
                prompts = prompts.unsqueeze(0)  # (1, D): a single prompt
            if prompts.ndim != 2 or prompts.shape[0] == 0:
                raise ValueError(f"class {index}: expected (P, D) prompt embeddings with P >= 1, got {prompts.shape}")
            per_class.append(F.normalize(prompts, dim=-1).mean(dim=0))  # (D,)
        dims = {tuple(vector.shape) for vector in per_class}
        if len(dims) != 1:
            raise ValueError(f"classes have prompt embeddings of different widths: {sorted(dims)}")
        return F.normalize(torch.stack(per_class), dim=-1)  # (C, D)
    embeddings = _as_float_tensor(prompt_embeddings, "prompt embeddings")
    if embeddings.ndim == 2:
        if prompts_per_class < 1 or embeddings.shape[0] % prompts_per_class:
            raise ValueError(
                f"{embeddings.shape[0]} prompt embeddings cannot be split into groups of {prompts_per_class} per class"
            )
        embeddings = embeddings.reshape(-1, prompts_per_class, embeddings.shape[-1])  # (C, P, D)
    if embeddings.ndim != 3:
        raise ValueError(f"prompt embeddings must be (C * P, D) or (C, P, D), got shape {tuple(embeddings.shape)}")
    return F.normalize(F.normalize(embeddings, dim=-1).mean(dim=1), dim=-1)  # (C, D)


def zero_shot_scores(query: Any, class_emb: Any, logit_scale: float = 100.0) -> Tensor:
    """Class probabilities from the softmax over scaled cosine similarities.

    Args:
        query: (N, D) query embeddings.
        class_emb: (C, D) class embeddings (from ``class_embeddings``).
        logit_scale: the inverse temperature; 100 is CLIP's trained value. A trained model's own
            ``logit_scale`` gives probabilities calibrated the way it was trained.

    Returns:
        (N, C) probabilities; each row sums to 1.
    """
    query = _as_float_tensor(query, "query embeddings")
    class_emb = _as_float_tensor(class_emb, "class embeddings").to(query.device, query.dtype)
    if query.ndim != 2 or class_emb.ndim != 2 or query.shape[1] != class_emb.shape[1]:
        raise ValueError(
            f"expected query (N, D) and class embeddings (C, D), got {tuple(query.shape)} and {tuple(class_emb.shape)}"
        )
    logits = logit_scale * F.normalize(query, dim=-1) @ F.normalize(class_emb, dim=-1).T  # (N, C)
    return logits.softmax(dim=-1)


def zero_shot_predict(query: Any, class_emb: Any) -> Tensor:
    """Index of the most similar class for each query.

    Args:
        query: (N, D) query embeddings.
        class_emb: (C, D) class embeddings.

    Returns:
        (N,) int64 predicted class indices.
    """
    # the argmax does not depend on the temperature, so the default scale is as good as any
    return zero_shot_scores(query, class_emb).argmax(dim=-1)
