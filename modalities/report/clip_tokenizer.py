"""The CLIP byte-level BPE tokenizer of the ``clip_text`` encoders, carried by their weights file.

A text tower's token-embedding rows stand for the ids of the vocabulary it was trained with; under any other
tokenizer they mean nothing. So the tokenizer travels with the weights: ``medclip convert-weights --from open_clip
--to report`` writes it (a ``tokenizers`` JSON built from CLIP's BPE merges) into the file's metadata
(``medclip.tokenizer``), ``fit`` reads it from ``report.weights``, and the checkpoint's ``preprocess.json`` keeps it,
so a saved model never needs the weights file again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from .config import ReportConfig
from .tokenizer import SerializedTokenizer

START, END = "<start_of_text>", "<end_of_text>"  # open_clip's names of CLIP's special tokens
TOKENIZER_KEY = "medclip.tokenizer"  # medclip.weights.files.TOKENIZER


class CLIPReportTokenizer(SerializedTokenizer):
    """CLIP's tokenizer: lower-cased text, CLIP's word-splitting pattern, byte-level BPE with ``</w>`` word ends."""

    kind: ClassVar[str] = "clip_bpe"

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.cls_id = tokenizer.token_to_id(START)
        self.sep_id = tokenizer.token_to_id(END)
        if self.cls_id is None or self.sep_id is None:
            raise ValueError(f"the clip_text tokenizer lacks CLIP's {START} / {END} tokens")
        self.pad_id = 0  # open_clip pads with id 0; padded positions are masked and, under causal attention, unseen

    @classmethod
    def from_config(cls, cfg: ReportConfig) -> CLIPReportTokenizer:
        """The tokenizer stored in ``cfg.weights`` (a file written by ``medclip convert-weights --from open_clip``)."""
        from tokenizers import Tokenizer

        from medclip.weights.files import read_metadata

        if not cfg.weights:
            raise ValueError(
                f"report encoder {cfg.encoder!r} takes its vocabulary from its weights: set report.weights to a file "
                "written by `medclip convert-weights SOURCE DEST.safetensors --from open_clip --to report`"
            )
        metadata = read_metadata(cfg.weights, "modalities.report.weights")
        if TOKENIZER_KEY not in metadata:
            raise ValueError(
                "report.weights holds no tokenizer (medclip.tokenizer); write it with `medclip convert-weights "
                "--from open_clip --to report`"
            )
        return cls(Tokenizer.from_str(metadata[TOKENIZER_KEY]))

    @classmethod
    def fit(cls, sentences: Iterable[str], cfg: ReportConfig) -> CLIPReportTokenizer:
        """Nothing to learn: the vocabulary is the weights'."""
        return cls.from_config(cfg)
