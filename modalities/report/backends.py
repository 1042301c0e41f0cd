"""The registry of report encoder choices: each pairs a tokenizer with the encoder that understands its ids.

``ReportConfig.encoder`` names an entry. A third-party package can add one (say, a Mamba text encoder) with
``REPORT_ENCODERS.register("name", ReportBackend(tokenizer=..., encoder=...))`` without touching this plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from medclip.registry import Registry

from .config import ReportConfig
from .encoder import HFReportEncoder, TransformerReportEncoder
from .tokenizer import BPEReportTokenizer, HFReportTokenizer


@dataclass(frozen=True)
class ReportBackend:
    """One encoder choice.

    Attributes:
        tokenizer: a class with ``fit(sentences, cfg)``, ``from_config(cfg)`` (None when it must be fitted first)
            and ``from_state(state, cfg)``, producing a ``ReportTokenizer``.
        encoder: builds the ``nn.Module`` (with ``output_dim``) from the config.
    """

    tokenizer: Any
    encoder: Callable[[ReportConfig], nn.Module]


REPORT_ENCODERS: Registry[ReportBackend] = Registry("report encoder")
REPORT_ENCODERS.register("transformer", ReportBackend(tokenizer=BPEReportTokenizer, encoder=TransformerReportEncoder))
REPORT_ENCODERS.register("hf", ReportBackend(tokenizer=HFReportTokenizer, encoder=HFReportEncoder))
