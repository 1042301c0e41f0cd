"""Loading Hugging Face models and tokenizers from local files only: medclip never downloads weights.

Hospitals run training on machines without internet access, and silently fetching a model at run time would make a
run depend on what a hub served that day. So every load passes ``local_files_only=True``; when the files are not
there, the error says how to provide them. Model weights are read from safetensors only (``use_safetensors=True``):
a folder holding only ``pytorch_model.bin`` (a pickle) is refused with the command that converts it.

A checkpoint carries the model's config and tokenizer files (``save_model_files``): it must not depend on the
``hf_model`` folder, which may move or be missing where the checkpoint is loaded. The weights themselves are not
copied: the checkpoint's ``model.safetensors`` holds the encoder's trained weights, and a model built from the
carried config (``AutoModel.from_config``) is filled from there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medclip.registry import lazy_import


class OfflineModelError(FileNotFoundError):
    """The "hf" report encoder's model or tokenizer is not available on this machine."""


def transformers_module() -> Any:
    """The ``transformers`` package, imported lazily: only the "hf" encoder needs it."""
    return lazy_import("transformers", "the report modality's 'hf' encoder")


PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
NAME_KEYS = ("_name_or_path", "name_or_path")  # where transformers records the folder a model came from


def refuse_pickled_weights(hf_model: str) -> None:
    """A local model folder whose weights exist only in a pickle-based file is refused, naming the conversion."""
    folder = Path(hf_model).expanduser()
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    if any((folder / name).is_file() for name in PICKLED_WEIGHTS):
        raise OfflineModelError(
            "report encoder 'hf': hf_model holds its weights only in a pickle-based file (pytorch_model.bin); "
            "medclip never unpickles weights. Convert the folder once with `medclip convert-weights HF_DIR OUT_DIR "
            "--from hf_text --trust-pickle` and set modalities.report.hf_model=OUT_DIR."
        )


def save_model_files(source: str, tokenizer: Any, folder: Path) -> None:
    """Write the model's config and its tokenizer's files into ``folder`` (no weights, no code, no pickle).

    The folder names in the written JSON files (``_name_or_path``) are blanked: they are the training machine's paths.
    """
    transformers = transformers_module()
    folder.mkdir(parents=True, exist_ok=True)
    load_local(transformers.AutoConfig.from_pretrained, source, "config").save_pretrained(str(folder))
    tokenizer.save(folder)
    for path in folder.glob("*.json"):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and any(key in data for key in NAME_KEYS):
            path.write_text(json.dumps({**data, **{key: "" for key in NAME_KEYS if key in data}}, indent=2))


UNUSED_MISSING = ("pooler.",)  # the encoder pools hidden states itself: a release without a pooler is whole


def load_pretrained_model(hf_model: str) -> Any:
    """The model of a local folder, its weights read from safetensors and checked: a tensor the architecture needs
    but the folder lacks would be left random without a word, so it is an error naming the keys."""
    transformers = transformers_module()
    refuse_pickled_weights(hf_model)
    model, info = load_local(
        transformers.AutoModel.from_pretrained, hf_model, "model", use_safetensors=True, output_loading_info=True
    )
    missing = sorted(key for key in info.get("missing_keys") or [] if not key.startswith(UNUSED_MISSING))
    mismatched = [
        str(item[0]) if isinstance(item, tuple | list) else str(item) for item in info.get("mismatched_keys") or []
    ]
    if missing or mismatched:
        raise OfflineModelError(
            f"report encoder 'hf': the weights of hf_model={hf_model!r} do not fit its config: {len(missing)} missing "
            f"({', '.join(missing[:8])}), {len(mismatched)} of another shape ({', '.join(mismatched[:8])})"
        )
    return model


def model_from_files(folder: Path) -> Any:
    """An untrained model of the architecture in a checkpoint's carried config (the checkpoint fills its weights)."""
    transformers = transformers_module()
    config = load_local(transformers.AutoConfig.from_pretrained, str(folder), "config")
    return transformers.AutoModel.from_config(config)


def load_local(loader: Callable[..., Any], hf_model: str, what: str, **options: Any) -> Any:
    """Call ``loader(hf_model, local_files_only=True)``, turning "not found locally" into actionable advice.

    Args:
        loader: a ``from_pretrained`` class method (``AutoModel.from_pretrained``, ``AutoTokenizer.from_pretrained``).
        hf_model: a local directory written by ``save_pretrained``, or a model name already in the local cache.
        what: "model" or "tokenizer", for the message.
        options: more keyword arguments of the loader (``use_safetensors=True``).
    """
    try:
        return loader(hf_model, local_files_only=True, **options)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OfflineModelError(
            f"report encoder 'hf': cannot load the {what} of hf_model={hf_model!r} from local files ({reason}). "
            "medclip never downloads models. On a machine with internet access run "
            "`AutoModel.from_pretrained(NAME).save_pretrained(DIR)` and "
            "`AutoTokenizer.from_pretrained(NAME).save_pretrained(DIR)`, copy DIR here and set "
            "modalities.report.hf_model=DIR (or pre-fill the Hugging Face cache that HF_HOME points to)."
        ) from error
