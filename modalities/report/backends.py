"""The registry of report encoder choices: each pairs a tokenizer with the encoder that understands its ids.

``ReportConfig.encoder`` names an entry. A third-party package can add one (say, a Mamba text encoder) with
``REPORT_ENCODERS.register("name", ReportBackend(tokenizer=..., encoder=...))`` without touching this plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from medclip.registry import Registry

from .clip_text import CLIPTextEncoder, clip_text_quickgelu
from .clip_tokenizer import CLIPReportTokenizer
from .config import ReportConfig
from .encoder import HFReportEncoder, TransformerReportEncoder
from .tokenizer import BPEReportTokenizer, HFReportTokenizer


@dataclass(frozen=True)
class ReportBackend:
    """One encoder choice.

    Attributes:
        tokenizer: a class with ``fit(sentences, cfg)``, ``from_config(cfg)`` (None when it must be fitted first)
            and ``from_state(state, cfg, files)``, producing a ``ReportTokenizer``.
        encoder: builds the ``nn.Module`` (with ``output_dim``) from the config and the files a checkpoint carries
            (None for a new model).
        carries_files: the tokenizer and encoder come from a model folder whose config and tokenizer a checkpoint
            must carry (the tokenizer then has ``save(folder)``).
    """

    tokenizer: Any
    encoder: Callable[[ReportConfig, Path | None], nn.Module]
    carries_files: bool = False


REPORT_ENCODERS: Registry[ReportBackend] = Registry("report encoder")
REPORT_ENCODERS.register("transformer", ReportBackend(tokenizer=BPEReportTokenizer, encoder=TransformerReportEncoder))
REPORT_ENCODERS.register("hf", ReportBackend(tokenizer=HFReportTokenizer, encoder=HFReportEncoder, carries_files=True))
# CLIP / open_clip text towers (weights and vocabulary from `medclip convert-weights --from open_clip --to report`)
REPORT_ENCODERS.register("clip_text", ReportBackend(tokenizer=CLIPReportTokenizer, encoder=CLIPTextEncoder))
REPORT_ENCODERS.register(
    "clip_text_quickgelu", ReportBackend(tokenizer=CLIPReportTokenizer, encoder=clip_text_quickgelu)
)
