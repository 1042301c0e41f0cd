"""Phrase -> token similarities of one input: the numbers behind every grounding map.

The phrase is embedded with the model's text tower as ONE pooled vector (``model.encode``: the same vector zero-shot
diagnosis compares studies with), not FILIP-style as the max over its word tokens. The report encoders' tokens are
sentence embeddings (``modalities/report/encoder.py``), and a phrase is one sentence, so its only token is the mean
of its word states, which is what the pooled vector is (mean pooling) up to the special tokens; the pooled vector is
also the one every contrastive loss trains, so it is the best-aligned text vector any checkpoint has.

The input's tokens are projected exactly as the token losses see them (``ContrastiveModel.encode_with_tokens``: the
modality's projection head applied to every token, then L2-normalised, as for FILIP and the token alignment loss), and
each token's score is its cosine similarity with the phrase. For encoders that pool by averaging their tokens (the
volume ViT and ResNets, the ECG ResNet) through a linear head, the study's embedding before normalisation is the mean
of the tokens' projections before normalisation, so the map decomposes the global score over the input; for
CLS-pooled or attention-pooled encoders it does not: the map is then only what each token, on its own, resembles.
Either way it is similarity, not causal attribution (docs/explain.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MedclipError
from .layout import TokenLayout

PHRASE_EMBEDDING = "pooled"  # how phrases are embedded (see the module docstring); recorded in explain.json


class ExplainError(MedclipError):
    """A grounding map this model or modality cannot give (no tokens, no token layout, no text tower)."""


@dataclass
class Grounding:
    """One phrase's map over one input.

    Attributes:
        phrase: the phrase.
        scores: (T,) cosine similarity of each token with the phrase; NaN for padding tokens.
        global_score: cosine similarity of the input's pooled embedding with the phrase (what retrieval and
            zero-shot use).
        layout: where the tokens lie in the input.
    """

    phrase: str
    scores: np.ndarray
    global_score: float
    layout: TokenLayout

    @property
    def top_token(self) -> int:
        return int(np.nanargmax(self.scores))

    def summary(self) -> dict[str, Any]:
        """The JSON record of the map: max / mean token score, global score and the top token's region."""
        return {
            "phrase": self.phrase,
            "max_score": round(float(np.nanmax(self.scores)), 6),
            "mean_score": round(float(np.nanmean(self.scores)), 6),
            "global_score": round(self.global_score, 6),
            "top_region": self.layout.region(self.top_token),
        }


def text_modality_of(model: torch.nn.Module, text_modality: str = "") -> str:
    """The text modality phrases are embedded with: ``text_modality``, or the model's only one."""
    plugins = model.preprocess.modalities
    if text_modality:
        if text_modality not in plugins or not getattr(plugins[text_modality], "text_input", False):
            texts = [name for name, plugin in plugins.items() if getattr(plugin, "text_input", False)]
            raise ExplainError(f"{text_modality!r} is not a text modality of this model; its text modalities: {texts}")
        return text_modality
    texts = [name for name, plugin in plugins.items() if getattr(plugin, "text_input", False)]
    if len(texts) != 1:
        raise ExplainError(
            f"grounding maps need exactly one text modality to embed phrases with; this model has {texts or 'none'}"
            " (set text_modality)"
        )
    return texts[0]


def check_explainable(model: torch.nn.Module, modality: str) -> None:
    """Refuse, before anything is loaded, a modality that cannot have a map: unknown, text, or no layout hook.

    Raises:
        ExplainError: naming the modality and why.
    """
    plugins = model.preprocess.modalities
    if modality not in plugins:
        raise ExplainError(f"the checkpoint has no modality {modality!r}; it embeds {sorted(plugins)}")
    plugin = plugins[modality]
    if getattr(plugin, "text_input", False):
        raise ExplainError(f"modality {modality!r} is text: grounding maps are drawn on images, volumes, slides, ECGs")
    if type(plugin).token_layout is _base_token_layout():
        raise ExplainError(
            f"modality {modality!r} has no token layout: its plugin does not say where its encoder's tokens lie in "
            "an input (Modality.token_layout), so no map can be drawn for it"
        )


def _base_token_layout() -> Any:
    from ..types import Modality

    return Modality.token_layout


@torch.no_grad()
def embed_phrases(model: torch.nn.Module, phrases: Sequence[str], text_modality: str) -> torch.Tensor:
    """(P, D) unit embeddings of the phrases: the text tower's pooled vectors (see the module docstring)."""
    if not phrases or any(not phrase.strip() for phrase in phrases):
        raise ExplainError("give at least one phrase, and no empty one")
    model.eval()
    return model.encode(text_modality, model.preprocess[text_modality](list(phrases)))  # (P, D)


@torch.no_grad()
def ground(
    model: torch.nn.Module,
    modality: str,
    batch: Mapping[str, Any],
    phrases: Sequence[str],
    phrase_embeddings: torch.Tensor,
) -> list[Grounding]:
    """The maps of every phrase over the one input of a collated one-row ``batch`` of ``modality``.

    Args:
        model: a ``ContrastiveModel`` with its preprocessing (``medclip.load_model``).
        modality: the input's modality.
        batch: ``{modality: input}`` of one row, as the plugin's ``collate`` makes it.
        phrases: the phrases, in the order of ``phrase_embeddings``.
        phrase_embeddings: (P, D) unit vectors (``embed_phrases``), or any directions to map.

    Raises:
        ExplainError: the encoder returns no tokens, the plugin has no layout for this input, or the layout does not
            account for the encoder's tokens.
    """
    plugin = model.preprocess.modalities[modality]
    inputs = batch[modality]
    device = model.log_logit_scale.device
    model.eval()
    pooled, tokens, token_mask = model.encode_with_tokens(modality, _to_device(inputs, device))
    if tokens is None:
        raise ExplainError(
            f"the {modality!r} encoder returns no tokens (a pooled vector only): grounding maps need a token-level "
            "encoder (ViT patches, feature maps, ECG time windows, slide patches)"
        )
    if tokens.shape[0] != 1:
        raise ValueError(f"ground takes a one-row batch, got {tokens.shape[0]} rows")
    layout = plugin.token_layout(inputs, int(tokens.shape[1]))
    if layout is None:
        raise ExplainError(f"modality {modality!r} gives no token layout for this input, so no map can be drawn")
    if layout.token_count != tokens.shape[1]:
        raise ExplainError(
            f"the {modality!r} token layout places {layout.token_count} tokens but the encoder gave {tokens.shape[1]}"
        )
    phrase_embeddings = phrase_embeddings.to(device=device, dtype=tokens.dtype)
    similarities = (tokens[0] @ phrase_embeddings.T).float().cpu().numpy()  # (T, D) @ (D, P) -> (T, P)
    if token_mask is not None:
        similarities[~token_mask[0].cpu().numpy().astype(bool)] = np.nan
    global_scores = (F.normalize(pooled, dim=-1)[0] @ phrase_embeddings.T).float().cpu().numpy()  # (P,)
    return [
        Grounding(phrase, similarities[:, index].copy(), float(global_scores[index]), layout)
        for index, phrase in enumerate(phrases)
    ]


def _to_device(inputs: Any, device: torch.device) -> Any:
    from ..device import move_to_device

    return move_to_device(inputs, device)
