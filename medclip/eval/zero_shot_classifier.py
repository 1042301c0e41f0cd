"""``ZeroShotClassifier``: findings scored from a prompt set with a trained model, no classifier trained.

Each finding's positive (and, in binary mode, negative) phrasings x templates are embedded with the model's text
tower and averaged (prompt ensembling); a query embedding is then scored against them:

- ``binary``: per finding, softmax over [positive, negative] similarity (findings do not compete; CheXzero);
- ``multiclass``: softmax over the findings' positive embeddings (exactly one class per row, e.g. cell types).

The model's own learned temperature is used unless another is given, so probabilities are as sharp as training made
them. ``medclip.zero_shot_classifier(model, "chest_ct_findings")`` builds one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..config import ConfigError
from ..embedding import embed
from .prompts import PromptSet, load_prompt_set
from .zero_shot import class_embeddings, zero_shot_scores
from .zero_shot_binary import binary_zero_shot_scores

ZERO_SHOT_MODES = ("binary", "multiclass")


class ZeroShotClassifier:
    """Probabilities of findings for embeddings or inputs of a query modality.

    Args:
        model: a trained ``ContrastiveModel`` (``medclip.load_model``) with a text modality.
        prompts: a ``PromptSet``, a prompt-set YAML path, or the name of a bundled set (``medclip/prompts/``).
        findings: the findings to score (default: every finding of the prompt set), in output column order.
        mode: "binary" or "multiclass" (see the module docstring).
        text_modality: the modality the prompts are embedded with.
        temperature: softmax temperature; 0 = the model's own learned temperature.
        batch_size: prompts per forward pass.

    Raises:
        ConfigError: an unknown mode, findings the prompt set does not cover, a model without the text modality.
        PromptSetError: an unreadable prompt set, or binary mode with findings lacking negative phrasings.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        prompts: PromptSet | str | os.PathLike,
        findings: Sequence[str] = (),
        mode: str = "binary",
        text_modality: str = "report",
        temperature: float = 0.0,
        batch_size: int = 64,
    ) -> None:
        if mode not in ZERO_SHOT_MODES:
            raise ConfigError(f"mode must be one of {', '.join(ZERO_SHOT_MODES)}, got {mode!r}")
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = the model's own), got {temperature}")
        if text_modality not in model.preprocess.modalities:
            raise ConfigError(f"the model has no {text_modality!r} encoder to embed prompts with")
        self.prompts = load_prompt_set(prompts)
        self.findings = list(findings) or list(self.prompts.findings)
        missing = [name for name in self.findings if name not in self.prompts.findings]
        if missing:
            covered = list(self.prompts.findings)
            raise ConfigError(f"findings {missing} have no prompts in {self.prompts.source}; it covers {covered}")
        if mode == "binary":
            self.prompts.require_negatives(self.findings)
        self.model, self.mode, self.text_modality, self.batch_size = model, mode, text_modality, batch_size
        self.logit_scale = 1.0 / temperature if temperature > 0 else float(model.logit_scale.detach())
        self.positive = self._ensemble([self.prompts.positive_prompts(name) for name in self.findings])  # (K, D)
        self.negative = (
            self._ensemble([self.prompts.negative_prompts(name) for name in self.findings])
            if mode == "binary"
            else None
        )  # (K, D) or None

    def _ensemble(self, texts_per_finding: list[list[str]]) -> torch.Tensor:
        flat = [text for texts in texts_per_finding for text in texts]
        vectors = embed(self.model, self.text_modality, flat, batch_size=self.batch_size)  # (sum P_k, D)
        return class_embeddings(list(torch.split(vectors, [len(texts) for texts in texts_per_finding])))  # (K, D)

    def scores(self, embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, D) query embeddings -> (N, K) probabilities, K = ``len(self.findings)``."""
        query = torch.as_tensor(np.asarray(embeddings) if not torch.is_tensor(embeddings) else embeddings).float()
        if self.negative is not None:
            return binary_zero_shot_scores(query, self.positive, self.negative, self.logit_scale).numpy()
        return zero_shot_scores(query, self.positive, logit_scale=self.logit_scale).numpy()

    def predict_proba(self, inputs: Any, modality: str | None = None, batch_size: int = 64) -> np.ndarray:
        """(N, K) probabilities for embeddings ((N, D) array or tensor) or for inputs of ``modality``.

        Args:
            inputs: query embeddings, or references the model's preprocessing reads (paths, series folders, ...).
            modality: the query modality when ``inputs`` are references.
            batch_size: inputs per forward pass.
        """
        if isinstance(inputs, np.ndarray | torch.Tensor):
            return self.scores(inputs)
        if modality is None:
            raise ValueError("predict_proba needs the query modality when given inputs rather than embeddings")
        return self.scores(embed(self.model, modality, inputs, batch_size=batch_size))
