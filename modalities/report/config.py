"""``ReportConfig``: the options of the ``report`` modality (what ``modalities.report:`` holds in a run's YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field

from medclip.types import ModalityConfig

from .sections import SECTION_NAMES

POOLINGS = ("mean", "cls")


@dataclass
class ReportConfig(ModalityConfig):
    """Options of the report plugin.

    Attributes:
        encoder: "transformer" (a small text transformer trained from scratch, with a BPE tokenizer fitted on
            the training reports), "hf" (a pretrained Hugging Face model and its own tokenizer, from local files), or
            "clip_text" / "clip_text_quickgelu" (a CLIP text tower and its vocabulary, from ``weights``: a file
            written by ``medclip convert-weights --from open_clip --to report``, which prints the options to set).
        hf_model: local directory (or name already in the local Hugging Face cache) of the "hf" model; never
            downloaded.
        width: hidden size of the "transformer" encoder; the "hf" encoder uses the model's own hidden size.
        layers: transformer blocks of the "transformer" encoder.
        heads: attention heads of the "transformer" encoder; must divide ``width``.
        dropout: dropout inside the "transformer" encoder.
        max_tokens: tokens per report including [CLS]/[SEP]; longer reports are truncated.
        vocab_size: BPE vocabulary size of the fitted tokenizer (and rows of the token embedding).
        lowercase: lowercase (and strip accents) before tokenizing; "hf" follows its own tokenizer's settings.
        sections: which report sections to keep, in this order, when their headers are present; a report with none
            of them is used whole.
        max_sentences: sentences per report kept for the sentence-level tokens; later ones are truncated.
        shuffle_sentences: training-time augmentation that shuffles sentence order (sentences of a report are mostly
            independent statements, so their order carries little meaning).
        min_frequency: a word piece must occur this often in the training reports to enter the vocabulary.
        deidentify: replace names, dates, ID-like numbers, phone numbers, e-mail/web/postal addresses with typed
            placeholders ("[NAME]", "[DATE]", ...) as soon as a report is read, before it is used or stored (rule set
            and measured recall in docs/deid.md). Turn off only for text that is already de-identified.
        deidentify_ages_over_89: also replace ages above 89 with "[AGE]" (HIPAA Safe Harbor).
        deid_backend: what finds the identifiers (``REPORT_DEID_BACKENDS``): "rules" (medclip's rule set, the
            offline default), "presidio" (Presidio + a local spaCy model; extra ``medclip[presidio]``) or
            "rules+presidio" (both: recall never below the rules'). Same placeholders whichever is chosen.
        presidio_model: the spaCy model Presidio uses: a local model directory or an installed model package name
            (``en_core_web_lg``); never downloaded (docs/deid.md says how to get one).
        presidio_score_threshold: Presidio findings below this confidence are ignored (its weakest recognizers
            match any 8-9 digit number with confidence 0.01-0.05).
        pooling: the report vector: "mean" of the real token states (default; see ``encoder.py`` for why), or "cls",
            the first token's state ([CLS] of BERT-style models, which some pretrained models were tuned to use).
        freeze_pretrained: "hf" only: keep the pretrained model's weights fixed (and its dropout off); only the
            projection head trains. For small datasets, or to keep a domain model's language knowledge intact.
        max_chars: longest report accepted, in characters (inline or file; ``too_large`` beyond). Reports are a few
            thousand characters; the limit keeps one manifest cell from holding up a data-loader worker.
    """

    encoder: str = "transformer"
    hf_model: str = ""
    width: int = 256  # small enough to train from scratch on one institution's reports
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    max_tokens: int = 128  # covers findings + impression of most radiology reports
    vocab_size: int = 4000  # radiology language is narrow: a few thousand word pieces cover it
    lowercase: bool = True
    sections: list[str] = field(default_factory=lambda: ["findings", "impression"])
    max_sentences: int = 32
    shuffle_sentences: bool = False
    min_frequency: int = 2  # a piece seen once is usually a typo or an identifier
    deidentify: bool = True  # on by default: report text is protected health information
    deidentify_ages_over_89: bool = True
    deid_backend: str = "rules"  # rules | presidio | rules+presidio (modalities/report/deid_backends.py)
    presidio_model: str = ""
    presidio_score_threshold: float = 0.4
    pooling: str = "mean"  # mean | cls
    freeze_pretrained: bool = False  # "hf" only: the pretrained weights stay fixed
    max_chars: int = 200_000  # ~40x a long report; loading one this long takes 1-3 s of CPU at most

    def __post_init__(self) -> None:
        unknown = [name for name in self.sections if name not in SECTION_NAMES]
        if unknown:
            raise ValueError(
                f"report.sections: unknown section name(s) {unknown}; known: {', '.join(sorted(SECTION_NAMES))}"
            )
        if self.max_tokens < 3:
            raise ValueError("report.max_tokens must be at least 3 ([CLS], one token, [SEP])")
        if not 0.0 <= self.presidio_score_threshold <= 1.0:
            raise ValueError("report.presidio_score_threshold must lie in [0, 1]")
        if self.max_chars < 1:
            raise ValueError("report.max_chars must be at least 1")
        if self.max_sentences < 1:
            raise ValueError("report.max_sentences must be at least 1")
        if self.encoder in ("transformer", "clip_text", "clip_text_quickgelu") and self.width % self.heads != 0:
            raise ValueError(f"report.heads ({self.heads}) must divide report.width ({self.width})")
        if self.pooling not in POOLINGS:
            raise ValueError(f"report.pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.freeze_pretrained and self.encoder != "hf":
            raise ValueError("report.freeze_pretrained applies to the pretrained 'hf' encoder only")
        if self.encoder == "hf" and not self.hf_model:
            raise ValueError("report.encoder 'hf' needs report.hf_model: a local model directory (save_pretrained)")
