"""``--from hf_text``: a Hugging Face text model folder into a folder medclip reads (safetensors weights only).

Model folders from a hub or a colleague often hold ``pytorch_model.bin`` (a pickle). medclip's "hf" report encoder
reads weights from safetensors only, so this importer writes a new folder with the model's ``config.json``, its
tokenizer files and the weights as ``model.safetensors`` (read with ``torch.load(weights_only=True)`` after
``--trust-pickle``, never with code). Custom modelling code (``*.py``) is never copied: medclip never passes
``trust_remote_code``. The new folder is checked by loading it with ``transformers`` (a missing tensor is an error,
except the unused pooler of a masked-language-model release), and is then named by ``modalities.report.hf_model``.
A checkpoint trained from it carries its config and tokenizer itself (``files/report``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from torch import Tensor

from ..registry import lazy_import
from .files import WEIGHTS_FILE, open_weights
from .foreign import import_torch_weights
from .importers import ConversionResult, Importer, ImportOptions
from .strict import WeightsError

CONFIG = "config.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
PICKLED_INDEX, PICKLED = "pytorch_model.bin.index.json", "pytorch_model.bin"
NAME_KEYS = ("_name_or_path", "name_or_path")
UNUSED_MISSING = ("pooler.",)  # medclip pools the last hidden states itself; a release without a pooler is whole


def _weights(source: Path, trust_pickle: bool) -> dict[str, Tensor]:
    if any(source.glob("*.safetensors")):
        return open_weights(source, "hf_text source").tensors()
    if (source / PICKLED_INDEX).is_file():
        try:
            shards = sorted(set(json.loads((source / PICKLED_INDEX).read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise WeightsError(f"{PICKLED_INDEX} is not a sharded-weights index") from None
        tensors: dict[str, Tensor] = {}
        for shard in shards:
            if Path(str(shard)).name != str(shard):
                raise WeightsError(f"{PICKLED_INDEX} names a shard outside the folder")
            tensors.update(import_torch_weights(source / str(shard), trust_pickle))
        return tensors
    if (source / PICKLED).is_file():
        return import_torch_weights(source / PICKLED, trust_pickle)
    raise WeightsError("the model folder holds no weights (model.safetensors or pytorch_model.bin)")


def _copy_json_without_paths(source: Path, destination: Path) -> None:
    data = json.loads(source.read_text())
    if isinstance(data, dict):
        data = {**data, **{key: "" for key in NAME_KEYS if key in data}}
    destination.write_text(json.dumps(data, indent=2))


def check_loads(folder: Path) -> list[str]:
    """Load the folder with ``transformers`` (safetensors only); missing tensors are an error.

    Returns:
        Notes on tensors the text model does not use (a masked-language-model head) or leaves new (its pooler).
    """
    transformers = lazy_import("transformers", "hf_text conversion")
    try:
        _, info = transformers.AutoModel.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, output_loading_info=True
        )
    except (OSError, ValueError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"the converted folder does not load with transformers: {reason}") from None
    missing = sorted(info.get("missing_keys") or [])
    blocking = [key for key in missing if not key.startswith(UNUSED_MISSING)]
    mismatched = [
        str(item[0]) if isinstance(item, tuple | list) else str(item) for item in info.get("mismatched_keys") or []
    ]
    if blocking or mismatched:
        raise WeightsError(
            f"the model's weights do not fit its config: {len(blocking)} missing ({', '.join(blocking[:8])}), "
            f"{len(mismatched)} of another shape ({', '.join(mismatched[:8])})"
        )
    notes = []
    unexpected = sorted(info.get("unexpected_keys") or [])
    if unexpected:
        notes.append(f"{len(unexpected)} tensors the text model does not use (e.g. {unexpected[0]}): kept, ignored")
    if missing:
        notes.append(f"left new: {', '.join(missing[:4])} (unused: medclip pools the hidden states itself)")
    return notes


def convert_hf_folder(source: Path, destination: Path, options: ImportOptions) -> ConversionResult:
    source, destination = Path(source).expanduser(), Path(destination).expanduser()
    if not source.is_dir() or not (source / CONFIG).is_file():
        raise WeightsError(f"--from hf_text takes a Hugging Face model folder with {CONFIG}: {source.name}")
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise WeightsError(f"{destination.name} exists and is not an empty folder; name a new one")
    tensors = {key: value.contiguous().clone() for key, value in _weights(source, options.trust_pickle).items()}
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".staging", dir=destination.parent))
    try:
        from safetensors.torch import save_file

        _copy_json_without_paths(source / CONFIG, staging / CONFIG)
        copied = [name for name in TOKENIZER_FILES if (source / name).is_file()]
        for name in copied:
            if name.endswith(".json"):
                _copy_json_without_paths(source / name, staging / name)
            else:
                shutil.copyfile(source / name, staging / name)
        save_file(tensors, str(staging / WEIGHTS_FILE), {"format": "pt"})
        notes = check_loads(staging)
        if destination.exists():
            destination.rmdir()
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not copied:
        notes.append("the folder has no tokenizer files: add them (tokenizer.save_pretrained) before training")
    skipped = sorted(path.name for path in source.glob("*.py"))
    if skipped:
        notes.append(f"not copied: modelling code ({', '.join(skipped)}); medclip never runs code from model folders")
    return ConversionResult(
        destination, len(tensors), "report", "", {"encoder": "hf", "hf_model": str(destination)}, notes
    )


HF_TEXT = Importer(
    name="hf_text",
    description="a Hugging Face text model folder -> a folder with safetensors weights (report hf_model)",
    convert_folder=convert_hf_folder,
)
