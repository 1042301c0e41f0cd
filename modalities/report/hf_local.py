"""Loading Hugging Face models and tokenizers from local files only: medclip never downloads weights.

Hospitals run training on machines without internet access, and silently fetching a model at run time would make a
run depend on what a hub served that day. So every load passes ``local_files_only=True``; when the files are not
there, the error says how to provide them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medclip.registry import lazy_import


class OfflineModelError(FileNotFoundError):
    """The "hf" report encoder's model or tokenizer is not available on this machine."""


def transformers_module() -> Any:
    """The ``transformers`` package, imported lazily: only the "hf" encoder needs it."""
    return lazy_import("transformers", "the report modality's 'hf' encoder")


def load_local(loader: Callable[..., Any], hf_model: str, what: str) -> Any:
    """Call ``loader(hf_model, local_files_only=True)``, turning "not found locally" into actionable advice.

    Args:
        loader: a ``from_pretrained`` class method (``AutoModel.from_pretrained``, ``AutoTokenizer.from_pretrained``).
        hf_model: a local directory written by ``save_pretrained``, or a model name already in the local cache.
        what: "model" or "tokenizer", for the message.
    """
    try:
        return loader(hf_model, local_files_only=True)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OfflineModelError(
            f"report encoder 'hf': cannot load the {what} of hf_model={hf_model!r} from local files ({reason}). "
            "medclip never downloads models. On a machine with internet access run "
            "`AutoModel.from_pretrained(NAME).save_pretrained(DIR)` and "
            "`AutoTokenizer.from_pretrained(NAME).save_pretrained(DIR)`, copy DIR here and set "
            "modalities.report.hf_model=DIR (or pre-fill the Hugging Face cache that HF_HOME points to)."
        ) from error
