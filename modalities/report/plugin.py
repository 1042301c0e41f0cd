"""``ReportModality``: free-text clinical reports (radiology, pathology) as a medclip modality.

Pipeline: ``resolve`` (manifest cell -> inline text or file) -> ``load`` (clean text + allow-listed metadata) ->
``transforms`` (keep FINDINGS / IMPRESSION, split sentences, tokenize) -> ``collate`` (pad + masks) -> encoder
(pooled report vector + one embedding per sentence for fine-grained losses).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclip.types import Modality, ModalityError, Sample

from .backends import REPORT_ENCODERS, ReportBackend
from .cleaning import clean_report_text
from .config import ReportConfig
from .deid_backends import (
    REPORT_DEID_BACKENDS,
    build_deidentifier,
    check_deidentification_state,
    deidentification_state,
)
from .hf_local import save_model_files
from .reading import read_report, resolve_cell
from .sections import extract_sections
from .sentences import split_sentences
from .synthetic import generate_reports
from .tokenizer import ReportTokenizer
from .transform import ReportTransform, deidentify_report, report_sentences

PREPROCESS_FORMAT = 1  # bump when the meaning of the saved state changes


class ReportModality(Modality):
    """Free-text reports: inline manifest text or .txt/.md files, tokenized per sentence.

    The "transformer" encoder needs its BPE tokenizer fitted on the training reports (``fit``) or restored
    from a checkpoint (``load_preprocess_state``) before ``transforms``; the "hf" encoder uses its model's tokenizer.
    """

    name = "report"
    config_class = ReportConfig
    fits_on_data = True
    file_suffixes = (".txt", ".md")
    text_input = True  # model.tokenizer(texts) -> the report batch
    export_dynamic_axes = {key: {1: "tokens"} for key in ("input_ids", "attention_mask", "sentence_ids")}
    # open_clip / OpenAI-CLIP text towers fill the whole "clip_text" encoder
    weight_slots = {"clip_text": ""}

    def __init__(self, config: ReportConfig | None = None) -> None:
        super().__init__(config)
        REPORT_ENCODERS.get(self.config.encoder)  # fail early, listing the available encoders
        if self.config.deidentify:  # fail early (unknown backend, Presidio or its spaCy model missing), not mid-run
            REPORT_DEID_BACKENDS.get(self.config.deid_backend)
            build_deidentifier(self.config)
        self._tokenizer: ReportTokenizer | None = None
        self._files: Path | None = None  # the model files a checkpoint carries ("hf"), once attached

    # --- manifest cell -> reference -> sample ----------------------------------------------------------------------
    def resolve(self, value: str, root: str | os.PathLike) -> str | os.PathLike | Mapping[str, Any]:
        """Inline report text, unless the cell names a .txt/.md file (relative to ``root`` or absolute)."""
        return resolve_cell(value, root)

    def load(self, ref: str | os.PathLike | Mapping[str, Any]) -> Sample:
        """Read, clean and de-identify a report; metadata is allow-listed (never file names: they can hold identifiers).

        With ``deidentify`` on (the default), identifiers are replaced by typed placeholders here, by the backend
        ``deid_backend`` names (rules by default), before the text is split, tokenized, cached or logged.

        Raises:
            ModalityError: "missing_file", "not_regular_file", "too_large", "not_utf8", "binary_file", "unreadable",
                "invalid_reference", or "empty_report" when nothing is left after section extraction.
        """
        raw, source = read_report(ref, self.config.max_chars)
        text = deidentify_report(clean_report_text(raw), self.config)
        sections = extract_sections(text, self.config.sections)
        sentences = split_sentences(sections.text)
        if not sentences:
            where = "" if sections.used_whole_text else f" in the kept sections ({', '.join(self.config.sections)})"
            raise ModalityError("empty_report", f"report has no text{where}")
        meta = {
            "source": source,
            "n_chars": len(text),
            "n_sentences": len(sentences),
            "sections_found": sections.found,
        }
        return {self.name: text, f"{self.name}_meta": meta}

    # --- learned preprocessing -------------------------------------------------------------------------------------
    def _backend(self, cfg: ReportConfig) -> ReportBackend:
        return REPORT_ENCODERS.get(cfg.encoder)

    def fit(self, samples: Iterable[Sample]) -> None:
        """Fit the tokenizer on the training reports (the "hf" encoder only records its model path/name)."""
        cfg = self.config
        sentences = (
            sentence
            for sample in samples
            if isinstance(sample.get(self.name), str)
            for sentence in report_sentences(sample[self.name], cfg)
        )
        self._tokenizer = self._backend(cfg).tokenizer.fit(sentences, cfg)

    def _require_tokenizer(self, cfg: ReportConfig) -> ReportTokenizer:
        backend = self._backend(cfg)
        if self._tokenizer is None:
            self._tokenizer = backend.tokenizer.from_config(cfg)
        if self._tokenizer is None:
            raise RuntimeError(
                f"report encoder {cfg.encoder!r}: the tokenizer must be fitted on the training reports "
                "(ReportModality.fit) or loaded from a checkpoint's preprocess.json (load_preprocess_state) first"
            )
        if not isinstance(self._tokenizer, backend.tokenizer):
            raise RuntimeError(
                f"report tokenizer is of kind {self._tokenizer.kind!r}, which encoder {cfg.encoder!r} cannot read"
            )
        return self._tokenizer

    def preprocess_state(self) -> dict[str, Any]:
        """The config, the tokenizer (BPE tokenizer JSON, or the "hf" model name + vocabulary size) and the
        de-identification (backend, age switch, model identity), which evaluation must repeat."""
        return {
            "format": PREPROCESS_FORMAT,
            "config": asdict(self.config),
            "tokenizer": self._require_tokenizer(self.config).state(),
            "deidentification": deidentification_state(self.config),
        }

    def load_preprocess_state(self, state: Mapping[str, Any]) -> None:
        """Restore the tokenizer so reports tokenize exactly as in training (the config was given at construction),
        and check that reports are de-identified as in training (states written before backends existed: rules)."""
        if state.get("format") != PREPROCESS_FORMAT:
            found = state.get("format")
            raise ValueError(f"report preprocess state has format {found!r}, expected {PREPROCESS_FORMAT}")
        if "tokenizer" not in state:
            raise ValueError("report preprocess state holds no tokenizer")
        check_deidentification_state(state.get("deidentification"), self.config)
        self._tokenizer = self._backend(self.config).tokenizer.from_state(state["tokenizer"], self.config, self._files)

    # --- files a checkpoint carries ----------------------------------------------------------------------------------
    def save_files(self, folder: Path) -> bool:
        """The "hf" encoder's config and tokenizer files, so the checkpoint never needs ``hf_model`` again."""
        cfg = self.config
        if not self._backend(cfg).carries_files:
            return False
        source = str(self._files) if self._files is not None else cfg.hf_model
        save_model_files(source, self._require_tokenizer(cfg), folder)
        return True

    def attach_files(self, folder: Path) -> None:
        """Build the encoder and read the tokenizer from a checkpoint's files instead of ``hf_model``."""
        if not self._backend(self.config).carries_files:
            super().attach_files(folder)
        self._files = Path(folder)

    # --- the five methods of DESIGN.md -----------------------------------------------------------------------------
    def transforms(self, train: bool) -> Callable[[Sample], Sample]:
        """Sections -> sentences -> ids; sentence shuffling when ``train`` and ``cfg.shuffle_sentences``."""
        cfg = self.config
        return ReportTransform(self._require_tokenizer(cfg), cfg, shuffle_sentences=train and cfg.shuffle_sentences)

    def build_encoder(self) -> nn.Module:
        """The encoder ``cfg.encoder`` names: batch["report"] -> pooled (B, D), sentence tokens (B, S, D)."""
        cfg = self.config
        return self._backend(cfg).encoder(cfg, self._files)

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Pad to the longest report: input_ids (B, T) long, attention_mask (B, T) bool, sentence_ids (B, T) long.

        Missing reports get an all-padding row (attention False, sentence -1) and ``report_mask`` False.
        """
        rows = [sample.get(self.name) for sample in samples]
        for row in rows:
            if isinstance(row, str):
                raise TypeError("report collate expects transformed samples: apply transforms() before collate()")
        present = [row is not None for row in rows]
        length = max((len(row["input_ids"]) for row in rows if row is not None), default=1)
        pad_id = self._tokenizer.pad_id if self._tokenizer is not None else 0
        input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros(len(rows), length, dtype=torch.bool)  # (B, T)
        sentence_ids = torch.full((len(rows), length), -1, dtype=torch.long)  # (B, T)
        for index, row in enumerate(rows):
            if row is None:
                continue
            size = len(row["input_ids"])
            input_ids[index, :size] = row["input_ids"]
            attention_mask[index, :size] = True
            sentence_ids[index, :size] = row["sentence_ids"]
        return {
            self.name: {"input_ids": input_ids, "attention_mask": attention_mask, "sentence_ids": sentence_ids},
            f"{self.name}_mask": torch.tensor(present, dtype=torch.bool),
        }

    def synthetic(self, n: int, seed: int = 0) -> list[Sample]:
        """``n`` synthetic chest CT reports, loaded as inline text."""
        return [self.load(report.text) for report in generate_reports(n, seed)]
