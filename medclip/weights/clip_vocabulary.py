"""CLIP's tokenizer as a ``tokenizers`` JSON, built from CLIP's BPE merges file, so it can travel inside a weights file.

OpenAI CLIP and open_clip tokenize with a byte-level BPE whose merges ship as ``bpe_simple_vocab_16e6.txt.gz`` (in the
open_clip package, and in OpenAI's CLIP repository). The vocabulary is laid out as CLIP lays it out: the 256 byte
symbols, the same with the ``</w>`` word end, one entry per merge (48,894), then ``<start_of_text>`` and
``<end_of_text>``: 49,408 ids, the rows of a CLIP text tower's token embedding. The normalisation and word
splitting follow CLIP's (lower case, whitespace collapsed, ``'s|'t|'re|'ve|'m|'ll|'d|letters|one digit|other``);
CLIP's ``ftfy`` mojibake repair is not applied (medclip cleans report text itself).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

from .strict import WeightsError

MERGES_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGE_COUNT = 49152 - 256 - 2  # CLIP keeps this many merges of the file (after its header line)
START, END = "<start_of_text>", "<end_of_text>"
WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (GPT-2's) reversible map of the 256 bytes onto printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def default_merges_file() -> Path:
    """The merges file of the installed open_clip package (nothing is downloaded)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None or not (Path(spec.origin).parent / MERGES_FILE).is_file():
        raise WeightsError(
            f"CLIP's vocabulary ({MERGES_FILE}) was not found: install open-clip-torch, or pass --vocab with the "
            "file from OpenAI's CLIP repository"
        )
    return Path(spec.origin).parent / MERGES_FILE


def clip_tokenizer_json(merges_file: str | Path | None = None) -> str:
    """The ``tokenizers`` JSON of CLIP's tokenizer, from its merges file (``default_merges_file()`` when None)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    path = Path(merges_file) if merges_file else default_merges_file()
    try:
        lines = gzip.open(path).read().decode("utf-8").split("\n")[1 : MERGE_COUNT + 1]
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise WeightsError(f"{path.name}: not a gzipped CLIP merges file ({type(error).__name__})") from None
    merges = [tuple(line.split()) for line in lines]
    if len(merges) != MERGE_COUNT or any(len(merge) != 2 for merge in merges):
        raise WeightsError(f"{path.name}: expected {MERGE_COUNT} merges of two symbols each")
    symbols = list(bytes_to_unicode().values())
    vocabulary = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge) for merge in merges]
    vocabulary += [START, END]
    model = models.BPE(
        vocab={token: index for index, token in enumerate(vocabulary)},
        merges=merges,
        continuing_subword_prefix="",
        end_of_word_suffix="</w>",
        unk_token=END,
        fuse_unk=False,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([START, END])
    return tokenizer.to_str()
