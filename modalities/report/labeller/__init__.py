"""Report -> label extraction: a rule-based labeller with negation and uncertainty (CheXpert-labeller style).

``ReportLabeller(load_vocabulary("chest_xray")).labels(text)`` -> ``{"pleural effusion": 1, "pneumothorax": 0,
"edema": None, ...}``. ``medclip label-reports`` (``recipes/label_reports.py``) writes these as ``label:<finding>``
columns of a manifest. Format, policies, measured precision/recall and limits: docs/labeller.md.
"""

from __future__ import annotations

from .aggregate import UNCERTAIN_POLICIES, finding_state, label_value, no_finding_state
from .labeller import DEFAULT_SECTIONS, Mention, ReportLabeller
from .phrases import PhraseError, parse_phrase
from .scope import NEGATIVE, NOT_MENTIONED, POSITIVE, STATES, UNCERTAIN
from .text import report_sentences
from .vocabulary import (
    TRIGGER_KINDS,
    Finding,
    NoFinding,
    Scope,
    Vocabulary,
    VocabularyError,
    bundled_vocabularies,
    load_vocabulary,
    parse_vocabulary,
)

__all__ = [
    "DEFAULT_SECTIONS",
    "NEGATIVE",
    "NOT_MENTIONED",
    "POSITIVE",
    "STATES",
    "TRIGGER_KINDS",
    "UNCERTAIN",
    "UNCERTAIN_POLICIES",
    "Finding",
    "Mention",
    "NoFinding",
    "PhraseError",
    "ReportLabeller",
    "Scope",
    "Vocabulary",
    "VocabularyError",
    "bundled_vocabularies",
    "finding_state",
    "label_value",
    "load_vocabulary",
    "no_finding_state",
    "parse_phrase",
    "parse_vocabulary",
    "report_sentences",
]
