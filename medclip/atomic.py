"""Crash-safe file writing: a half-written checkpoint must never replace a good one.

Each file is written to a temporary name in the same folder, flushed and fsync'ed, then renamed over the target
(``os.replace`` is atomic on POSIX and Windows). A checkpoint directory is assembled under a temporary name and
swapped in the same way, so a reader sees either the old complete checkpoint or the new complete one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def fsync_directory(path: Path) -> None:
    """Persist a rename: the directory entry itself must reach the disk (a no-op where unsupported)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp_path)`` then fsync and rename the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        write(temp_path)
        with open(temp_path, "rb+") as stream:
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_path, path)
        fsync_directory(path.parent)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda temp: temp.write_text(text))


def replace_directory(staging: Path, target: Path) -> None:
    """Swap a fully written ``staging`` directory in place of ``target``."""
    target = Path(target)
    if target.exists():
        retired = target.with_name(f".{target.name}.old")
        if retired.exists():
            shutil.rmtree(retired)
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired)
    else:
        os.replace(staging, target)
    fsync_directory(target.parent)
