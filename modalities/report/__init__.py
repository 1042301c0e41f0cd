"""The ``report`` modality: free-text clinical reports (sections, sentences, tokenizer, encoders)."""

from __future__ import annotations

from .backends import REPORT_ENCODERS, ReportBackend
from .config import ReportConfig
from .deid import Deidentifier, PhiSpan, deidentify
from .deid_backends import (
    REPORT_DEID_BACKENDS,
    build_deidentifier,
    list_report_deid_backends,
    register_report_deid_backend,
)
from .hf_local import OfflineModelError
from .plugin import ReportModality
from .sections import SECTION_ALIASES, extract_sections
from .sentences import split_sentences
from .synthetic import generate_reports

__all__ = [
    "REPORT_DEID_BACKENDS",
    "REPORT_ENCODERS",
    "SECTION_ALIASES",
    "Deidentifier",
    "OfflineModelError",
    "PhiSpan",
    "ReportBackend",
    "ReportConfig",
    "ReportModality",
    "build_deidentifier",
    "deidentify",
    "extract_sections",
    "generate_reports",
    "list_report_deid_backends",
    "register_report_deid_backend",
    "split_sentences",
]
