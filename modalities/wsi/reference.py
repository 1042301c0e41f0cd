"""Manifest cells of the wsi modality.

- ``slides/a.tiff``: a slide-level sample, a bag of tissue patches on the configured grid (or, with
  ``source: features``, the slide's cached patch features).
- ``slides/a.tiff#x=1024,y=2048,level=0,size=256``: one patch, ``size`` pixels of pyramid ``level`` whose top-left is
  level-0 pixel (x, y) (OpenSlide's convention). Needs no MPP metadata.
- ``slides/a.tiff#mpp=0.5,x=1024,y=2048,size=224``: one patch at 0.5 microns per pixel (level choice then resize).
- ``slides/a.tiff#mpp=0.5,cx=1136,cy=2160,size=224``: the same patch given by its centre, as spatial
  transcriptomics spots are (``obsm["spatial"]`` holds centres).
- ``features/<key>.safetensors``: cached patch features of one slide (``cache.py``).

``mpp`` and ``size`` default to the configured ``mpp`` / ``patch_size``. The fragment is the part after the last
``#`` and must be ``key=value`` pairs, so a ``#`` inside a file name needs no escaping when no fragment follows it.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from medclip.types import ModalityError

FEATURE_SUFFIX = ".safetensors"
KEYS = {"x": int, "y": int, "cx": float, "cy": float, "level": int, "mpp": float, "size": int}
_PAIR = re.compile(r"\s*([a-z]+)\s*=\s*([-+0-9.eE]+)\s*")


@dataclass(frozen=True)
class PatchSpec:
    """Where one patch is: a top-left (x, y) or a centre (cx, cy) in level-0 pixels, and a level or an MPP.

    Attributes:
        x: level-0 left edge, or None when the centre is given.
        y: level-0 top edge, or None when the centre is given.
        cx: level-0 centre x, or None.
        cy: level-0 centre y, or None.
        level: pyramid level to read ``size`` pixels from, or None to read at ``mpp``.
        mpp: target microns per pixel, or None (the configured one; ignored when ``level`` is set).
        size: patch side in pixels, or None (the configured ``patch_size``).
    """

    x: int | None = None
    y: int | None = None
    cx: float | None = None
    cy: float | None = None
    level: int | None = None
    mpp: float | None = None
    size: int | None = None


@dataclass(frozen=True)
class SlideReference:
    """A parsed cell: the file, and the patch when the cell names one (None = the whole slide)."""

    path: Path
    patch: PatchSpec | None = None

    @property
    def is_features(self) -> bool:
        return self.path.name.endswith(FEATURE_SUFFIX)


def parse_fragment(fragment: str) -> PatchSpec:
    """``"x=1,y=2,level=0,size=256"`` -> ``PatchSpec``.

    Raises:
        ModalityError: ``bad_reference`` for an unknown key, a repeated key, a bad number, or an incomplete or
            contradictory position (both corner and centre, only one of x / y, ...).
    """
    values: dict[str, float | int] = {}
    for position, part in enumerate(fragment.split(","), start=1):
        match = _PAIR.fullmatch(part)
        if not match or match.group(1) not in KEYS:  # the cell's text is never quoted: it could hold anything
            raise ModalityError(
                "bad_reference", f"wsi patch reference part {position} is not one of {', '.join(KEYS)}=<number>"
            )
        key, text = match.groups()
        if key in values:
            raise ModalityError("bad_reference", f"wsi patch reference repeats {key!r}")
        try:
            number = float(text)
        except ValueError:
            raise ModalityError("bad_reference", f"wsi patch reference {key}= is not a number") from None
        if not math.isfinite(number):  # "1e999" parses as infinity
            raise ModalityError("bad_reference", f"wsi patch reference {key}= is not a finite number")
        if KEYS[key] is int:
            if not number.is_integer():
                raise ModalityError("bad_reference", f"wsi patch reference {key}= must be an integer")
            number = int(number)
        values[key] = number
    corner = "x" in values or "y" in values
    centre = "cx" in values or "cy" in values
    if corner == centre or ("x" in values) != ("y" in values) or ("cx" in values) != ("cy" in values):
        raise ModalityError("bad_reference", "a wsi patch reference needs either x and y (top-left) or cx and cy")
    if "level" in values and "mpp" in values:
        raise ModalityError("bad_reference", "a wsi patch reference takes a level or an mpp, not both")
    if values.get("level", 0) < 0 or values.get("size", 1) < 1 or values.get("mpp", 1.0) <= 0:
        raise ModalityError("bad_reference", "a wsi patch reference needs level >= 0, size >= 1 and mpp > 0")
    return PatchSpec(**values)


def parse_reference(value: str | os.PathLike, root: str | os.PathLike | None = None) -> SlideReference:
    """Parse a manifest cell (see the module docstring), resolving a relative path against ``root``."""
    text = os.fspath(value).strip()
    path_text, patch = text, None
    marker = text.rfind("#")
    if marker >= 0 and "=" in text[marker + 1 :]:
        path_text, patch = text[:marker], parse_fragment(text[marker + 1 :])
    path = Path(path_text).expanduser()
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    reference = SlideReference(path, patch)
    if reference.is_features and patch is not None:
        raise ModalityError("bad_reference", "cached slide features take no patch fragment")
    return reference


def format_reference(path: str | os.PathLike, **values: float | int) -> str:
    """The manifest cell of a patch: ``format_reference("a.tiff", mpp=0.5, cx=10, cy=20, size=224)``."""
    parse_fragment(",".join(f"{key}={value}" for key, value in values.items()))  # validates
    parts = ",".join(f"{key}={_number(value)}" for key, value in values.items())
    return f"{os.fspath(path)}#{parts}"


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)
