"""Binary zero-shot scores: for each finding, "present" prompts against "absent" prompts.

Multi-class zero-shot (``zero_shot.zero_shot_scores``) assumes exactly one class per input. Findings are not like
that: a scan can show an effusion *and* a nodule, or nothing. Each finding is therefore scored on its own, as the
softmax over the similarity to its positive prompt embedding and to its negative one (CheXzero's recipe), giving a
probability per finding that does not compete with the other findings.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def binary_zero_shot_scores(query: Any, positive: Any, negative: Any, logit_scale: float) -> Tensor:
    """Probability of each finding for each query.

    Args:
        query: (N, D) query embeddings.
        positive: (K, D) class embedding of each finding's positive prompts (``class_embeddings``).
        negative: (K, D) class embedding of each finding's negative prompts.
        logit_scale: inverse temperature (the model's own ``logit_scale`` gives its training sharpness).

    Returns:
        (N, K) probabilities: softmax over [positive, negative] similarity, positive entry.
    """
    query = F.normalize(torch.as_tensor(query, dtype=torch.float32), dim=-1)
    positive = F.normalize(torch.as_tensor(positive, dtype=torch.float32), dim=-1)
    negative = F.normalize(torch.as_tensor(negative, dtype=torch.float32), dim=-1)
    if positive.shape != negative.shape or query.ndim != 2 or positive.ndim != 2 or query.shape[1] != positive.shape[1]:
        raise ValueError(
            f"expected query (N, D) and positive/negative (K, D), got {tuple(query.shape)}, "
            f"{tuple(positive.shape)}, {tuple(negative.shape)}"
        )
    logits = logit_scale * torch.stack([query @ positive.T, query @ negative.T], dim=-1)  # (N, K, 2)
    return logits.softmax(dim=-1)[..., 0]  # (N, K)
