"""Report tokenizers: a byte-pair vocabulary fitted on the training reports, or a pretrained model's own tokenizer.

Both tokenize one sentence at a time, so that every token knows which sentence it came from (``sentence_ids``); the
sentence-level embeddings of fine-grained losses are pooled from those tokens. ``tokenize_sentences`` assembles a
report as ``[CLS] sentence 0 ... sentence N [SEP]`` truncated to ``max_tokens``.

Sentences are encoded one by one rather than with ``encode_batch``: the batch call starts the tokenizers library's
thread pool, which then deadlocks or warns in forked DataLoader workers, and reports have few sentences anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from .config import ReportConfig
from .hf_local import load_local, transformers_module

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]  # [PAD] first: id 0, so zero-filled padding is padding


class ReportTokenizer(Protocol):
    """What the report transforms need from a tokenizer."""

    kind: ClassVar[str]
    pad_id: int
    cls_id: int | None
    sep_id: int | None

    def encode(self, sentence: str) -> list[int]:
        """Token ids of one sentence, without special tokens."""
        ...

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state that ``from_state`` turns back into an identical tokenizer."""
        ...


class SerializedTokenizer:
    """A ``tokenizers.Tokenizer`` whose whole state is its JSON (the trained BPE, CLIP's BPE): encoding, the vocabulary
    size and the checkpoint state (``{"kind", "json"}``) are the same for every such tokenizer; subclasses set
    ``kind`` and read their special-token ids in ``__init__(tokenizer)``."""

    kind: ClassVar[str]
    _tokenizer: Any

    @classmethod
    def from_state(cls, state: Mapping[str, Any], cfg: ReportConfig, files: Path | None = None) -> SerializedTokenizer:
        from tokenizers import Tokenizer

        _check_kind(state, cls.kind)
        return cls(Tokenizer.from_str(state["json"]))

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def encode(self, sentence: str) -> list[int]:
        return self._tokenizer.encode(sentence, add_special_tokens=False).ids

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "json": self._tokenizer.to_str()}


class BPEReportTokenizer(SerializedTokenizer):
    """A byte-pair-encoding (BPE) tokenizer trained on the training reports with the ``tokenizers`` library.

    Training on the institution's own reports (rather than downloading a general vocabulary) keeps everything
    offline and gives a vocabulary that covers its radiology terms in a few thousand pieces.

    BPE rather than WordPiece because WordPiece training is not reproducible: its "##" continuation pieces get ids
    in hash-map order, which changes merge tie-breaks from run to run (huggingface/tokenizers#1794). Word starts are
    marked SentencePiece-style ("▁lung" vs "lung" inside a word) through the base alphabet, which stays
    deterministic. Digits are split one by one so that sizes ("3.5 cm") do not fill the vocabulary with numbers,
    and characters never seen in training map to [UNK] rather than vanishing.
    """

    kind: ClassVar[str] = "bpe"

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.pad_id = tokenizer.token_to_id(PAD)
        self.cls_id = tokenizer.token_to_id(CLS)
        self.sep_id = tokenizer.token_to_id(SEP)

    @classmethod
    def fit(cls, sentences: Iterable[str], cfg: ReportConfig) -> BPEReportTokenizer:
        """Train a vocabulary of at most ``cfg.vocab_size`` pieces on the report sentences."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        sentences = list(sentences)
        if not sentences:
            raise ValueError("report tokenizer: no training report sentences to fit the vocabulary on")
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, lowercase=cfg.lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Metaspace(),  # "the lungs" -> "▁the", "▁lungs"
                pre_tokenizers.Punctuation(),  # "lungs." -> "▁lungs", "."
                pre_tokenizers.Digits(individual_digits=True),  # "3.5" -> "3", ".", "5"
            ]
        )
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
        tokenizer.train_from_iterator(sentences, trainer=trainer, length=len(sentences))
        return cls(tokenizer)

    @classmethod
    def from_config(cls, cfg: ReportConfig) -> BPEReportTokenizer | None:
        """None: the vocabulary only exists once fitted on data or loaded from a checkpoint."""
        return None


class HFReportTokenizer:
    """The tokenizer saved with a pretrained Hugging Face model, loaded from local files only.

    It is not fitted: the model's embeddings only understand its own vocabulary. The fingerprint records the model
    path/name and the vocabulary size, so a checkpoint refuses a different tokenizer on reload.
    """

    kind: ClassVar[str] = "hf"

    def __init__(self, tokenizer: Any, hf_model: str) -> None:
        self._tokenizer = tokenizer
        self.hf_model = hf_model
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self.sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id

    @classmethod
    def from_config(cls, cfg: ReportConfig) -> HFReportTokenizer:
        transformers = transformers_module()
        return cls(load_local(transformers.AutoTokenizer.from_pretrained, cfg.hf_model, "tokenizer"), cfg.hf_model)

    @classmethod
    def fit(cls, sentences: Iterable[str], cfg: ReportConfig) -> HFReportTokenizer:
        """Nothing to learn: load the model's tokenizer (which checks it is available locally)."""
        return cls.from_config(cfg)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], cfg: ReportConfig, files: Path | None = None) -> HFReportTokenizer:
        """The tokenizer of the saved state: from the files a checkpoint carries (``files``), else from the model
        folder the state names (``hf_model``, kept as the tokenizer's provenance either way)."""
        _check_kind(state, cls.kind)
        transformers = transformers_module()
        hf_model = str(state["hf_model"])
        source = str(files) if files is not None else hf_model
        tokenizer = cls(load_local(transformers.AutoTokenizer.from_pretrained, source, "tokenizer"), hf_model)
        if tokenizer.vocab_size != state["vocab_size"]:
            raise ValueError(
                f"report tokenizer of hf_model={hf_model!r} has {tokenizer.vocab_size} tokens but the checkpoint was "
                f"trained with {state['vocab_size']}: the local model files differ from the training ones"
            )
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self._tokenizer)

    def encode(self, sentence: str) -> list[int]:
        return list(self._tokenizer.encode(sentence, add_special_tokens=False))

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "hf_model": self.hf_model, "vocab_size": self.vocab_size}

    def save(self, folder: Path) -> None:
        """Write the tokenizer's files (JSON / text, never a pickle) into ``folder``."""
        self._tokenizer.save_pretrained(str(folder))


def _check_kind(state: Mapping[str, Any], kind: str) -> None:
    if state.get("kind") != kind:
        raise ValueError(f"report tokenizer state is of kind {state.get('kind')!r}, expected {kind!r}")


def tokenize_sentences(tokenizer: ReportTokenizer, sentences: Sequence[str], max_tokens: int) -> tuple[Tensor, Tensor]:
    """``[CLS] s0 s1 ... [SEP]`` truncated to ``max_tokens``, with the sentence index of every token.

    Returns:
        input_ids: (T,) long.
        sentence_ids: (T,) long, the sentence index of each token, -1 for [CLS]/[SEP]. Sentences that produce no
            token are not counted, so indices are contiguous.
    """
    head = [tokenizer.cls_id] if tokenizer.cls_id is not None else []
    tail = [tokenizer.sep_id] if tokenizer.sep_id is not None else []
    budget = max_tokens - len(head) - len(tail)
    body: list[int] = []
    body_sentences: list[int] = []
    index = 0
    for sentence in sentences:
        room = budget - len(body)
        if room <= 0:
            break
        pieces = tokenizer.encode(sentence)[:room]
        if pieces:
            body.extend(pieces)
            body_sentences.extend([index] * len(pieces))
            index += 1
    input_ids = torch.tensor(head + body + tail, dtype=torch.long)
    sentence_ids = torch.tensor([-1] * len(head) + body_sentences + [-1] * len(tail), dtype=torch.long)
    return input_ids, sentence_ids
