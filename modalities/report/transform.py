"""The report transform: loaded text -> section extraction -> sentences -> token ids with sentence indices."""

from __future__ import annotations

from typing import Any

import torch

from medclip.data.loader import sample_generator
from medclip.types import Sample

from .cleaning import clean_report_text
from .config import ReportConfig
from .deid_backends import build_deidentifier
from .sections import extract_sections
from .sentences import split_sentences
from .tokenizer import ReportTokenizer, tokenize_sentences


def deidentify_report(text: str, cfg: ReportConfig) -> str:
    """``text`` with identifiers replaced by typed placeholders when ``cfg.deidentify``, by the backend
    ``cfg.deid_backend`` names (``deid_backends.py``; built once per process)."""
    return build_deidentifier(cfg)(text) if cfg.deidentify else text


def report_sentences(text: str, cfg: ReportConfig) -> list[str]:
    """The sentences the model sees: cleaned, de-identified, kept sections only, split, at most ``max_sentences``.

    ``load`` has already de-identified loaded reports; doing it again here (it is idempotent) covers text that never
    went through ``load``: zero-shot prompts, retrieval queries, samples built by hand.
    """
    text = deidentify_report(clean_report_text(text), cfg)
    return split_sentences(extract_sections(text, cfg.sections).text)[: cfg.max_sentences]


class ReportTransform:
    """Callable on a sample: ``sample["report"]`` text -> ``{"input_ids": (T,), "sentence_ids": (T,)}``.

    A class rather than a closure so DataLoader workers can pickle it. Samples without a report pass through.

    Args:
        tokenizer: a fitted or loaded ``ReportTokenizer``.
        cfg: the report config (sections, max_sentences, max_tokens).
        shuffle_sentences: shuffle sentence order (training augmentation); uses torch's RNG, which DataLoader seeds
            per worker, so runs with a fixed seed are reproducible.
    """

    def __init__(self, tokenizer: ReportTokenizer, cfg: ReportConfig, shuffle_sentences: bool = False) -> None:
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.shuffle_sentences = shuffle_sentences

    def __call__(self, sample: Sample) -> Sample:
        text: Any = sample.get("report")
        if text is None:
            return sample
        if not isinstance(text, str):
            raise TypeError(f"report transform expects loaded report text, got {type(text).__name__}")
        sentences = report_sentences(text, self.cfg)
        if self.shuffle_sentences and len(sentences) > 1:
            order = torch.randperm(len(sentences), generator=sample_generator()).tolist()
            sentences = [sentences[index] for index in order]
        input_ids, sentence_ids = tokenize_sentences(self.tokenizer, sentences, self.cfg.max_tokens)
        return {**sample, "report": {"input_ids": input_ids, "sentence_ids": sentence_ids}}
