"""Resolving a Hugging Face hub repository to a local checkpoint folder, only when the user asks for it.

medclip is offline by default: ``load_model(path)`` reads a local folder and never contacts a hub. With
``allow_download=True`` (CLI: ``--hub``), a name that is not a local folder is taken as a hub repository id and
fetched with ``huggingface_hub.snapshot_download`` (only the checkpoint's own files), then loaded as a folder. Under
``HF_HUB_OFFLINE=1`` the hub's local cache (``HF_HUB_CACHE``) is used without any network access, which is how a
hospital machine without internet reads a repository copied into its cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from .registry import lazy_import

# The files of a checkpoint: nothing else is fetched (no pickles, no optimizer state).
CHECKPOINT_FILES = ("model.safetensors", "config.yaml", "preprocess.json", "README.md", "data_provenance.json")


class HubError(FileNotFoundError):
    """A hub repository that could not be resolved to a complete local checkpoint folder."""


def resolve_checkpoint(path: str | os.PathLike, allow_download: bool = False, revision: str | None = None) -> Path:
    """A local checkpoint folder for ``path``: itself when it exists, else (only with ``allow_download``) the local
    snapshot of the hub repository it names.

    Args:
        path: a local folder, or a hub repository id (``"owner/name"``).
        allow_download: whether a hub id may be resolved; never by default.
        revision: the hub branch, tag or commit (default: the repository's main branch).

    Raises:
        HubError: ``path`` is no local folder and downloads are not allowed, or the hub could not serve it.
    """
    local = Path(path).expanduser()
    if local.exists():
        return local
    if not allow_download:
        raise HubError(
            f"checkpoint directory not found: {path}. If it is a Hugging Face hub repository, ask for it explicitly "
            "(medclip.load_model(..., allow_download=True) or --hub): medclip never downloads by default"
        )
    hub = lazy_import("huggingface_hub", "loading a checkpoint from a Hugging Face hub repository")
    try:
        folder = hub.snapshot_download(
            repo_id=str(path),
            revision=revision,
            allow_patterns=list(CHECKPOINT_FILES),
            # Both read now: huggingface_hub reads its environment once, at import.
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"),
        )
    except Exception as error:  # the hub library raises its own error types (offline, not found, gated, ...)
        raise HubError(f"hub repository {path!r} could not be resolved ({type(error).__name__}: {error})") from None
    return Path(folder)
