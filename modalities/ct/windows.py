"""Hounsfield-unit windows: each maps HU to [0, 1] over [level - width/2, level + width/2], one input channel each.

Named windows are the radiology defaults; any window can also be written as "level:width" (e.g. "-600:1500").
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
import torch

from medclip.registry import Registry


@dataclass(frozen=True)
class HUWindow:
    level: float  # centre, HU
    width: float  # HU

    def apply(self, hounsfield: np.ndarray) -> np.ndarray:
        low = self.level - self.width / 2.0
        return np.clip((hounsfield - np.float32(low)) / np.float32(self.width), 0.0, 1.0)


CT_HU_WINDOWS: Registry[HUWindow] = Registry("HU window")
CT_HU_WINDOWS.register("lung", HUWindow(level=-600.0, width=1500.0))
CT_HU_WINDOWS.register("mediastinum", HUWindow(level=40.0, width=400.0))
CT_HU_WINDOWS.register("bone", HUWindow(level=400.0, width=1800.0))
CT_HU_WINDOWS.register("abdomen", HUWindow(level=40.0, width=350.0))
CT_HU_WINDOWS.register("brain", HUWindow(level=40.0, width=80.0))
CT_HU_WINDOWS.register("liver", HUWindow(level=60.0, width=160.0))


def parse_window(text: str) -> HUWindow:
    """A registered window name, or "level:width" in HU.

    Raises:
        ValueError: unknown name, malformed pair, or a non-positive width.
    """
    if ":" in text:
        level, _, width = text.partition(":")
        try:
            window = HUWindow(level=float(level), width=float(width))
        except ValueError as error:
            raise ValueError(f"HU window {text!r} must be a name or 'level:width' in HU") from error
        if window.width <= 0:
            raise ValueError(f"HU window {text!r} needs a positive width")
        return window
    return CT_HU_WINDOWS.get(text)


def apply_windows(hounsfield: np.ndarray, windows: list[HUWindow]) -> np.ndarray:
    """(I, J, K) HU -> (C, I, J, K) float32 in [0, 1], one channel per window (in place: no temporaries)."""
    values = np.asarray(hounsfield)
    channels = np.empty((len(windows), *values.shape), dtype=np.float32)  # (C, I, J, K)
    for channel, window in zip(channels, windows, strict=True):
        np.subtract(values, np.float32(window.level - window.width / 2.0), out=channel, dtype=np.float32)
        np.multiply(channel, np.float32(1.0 / window.width), out=channel)
        np.clip(channel, 0.0, 1.0, out=channel)
    return channels


INT16_FAST_PATH_MAX_WIDTH = 30000.0  # clipped, shifted HU must fit int16 for the integer path
FUSED_CHUNK = 1 << 18  # voxels per fused step: the int16 and float32 scratch (1.5 MiB) stay in a core's L2 cache
_SCRATCH = threading.local()  # per-thread scratch buffers of the fused path (loader threads run it concurrently)


def windows_to_float16(hounsfield: np.ndarray, windows: list[HUWindow]) -> torch.Tensor:
    """(I, J, K) HU -> (C, I, J, K) float16 tensor in [0, 1]: what the eval transform hands to the encoder.

    For int16 HU (the cached form) each window is clipped and shifted in int16, converted once and scaled in float16:
    about half the memory traffic of the float32 route, which is what bounds warm (cached) loading. Integers up to
    2048 are exact in float16, so narrow windows lose nothing; wider ones round to 2 HU, below CT noise.

    That arithmetic is the definition; where a window allows it, a fused route computes the same values in one pass
    over the input, chunk by chunk in cache (``_fused_window``, ~4x faster on a 224x224x160 volume). It is used only
    for windows where it was checked to agree bit for bit with the definition on every int16 value.
    """
    values = np.asarray(hounsfield)
    if values.dtype != np.int16 or any(window.width > INT16_FAST_PATH_MAX_WIDTH for window in windows):
        return torch.from_numpy(apply_windows(values, windows)).to(torch.float16)
    # NumPy's allocator reuses freed heap memory; a fresh torch.empty of this size is page-faulted in on every call.
    channels = torch.from_numpy(np.empty((len(windows), *values.shape), dtype=np.float16))  # (C, I, J, K)
    for channel, window in zip(channels, windows, strict=True):
        if _fused_is_exact(window):
            _fused_window(values, window, channel)
        else:
            _window_int16(values, window, channel)
    return channels


def _window_int16(values: np.ndarray, window: HUWindow, channel: torch.Tensor) -> None:
    """The definition: clip and shift in int16, convert to float16, then offset, scale and clamp in float16."""
    low = max(int(np.floor(window.level - window.width / 2.0)), -32768)
    high = min(int(np.ceil(window.level + window.width / 2.0)), 32767)
    shifted = np.clip(values, low, high)  # (I, J, K) int16
    np.subtract(shifted, np.int16(low), out=shifted)  # in [0, width + 1]: fits int16
    offset = window.level - window.width / 2.0 - low  # < 1 HU: the floor of a fractional low edge
    channel.copy_(torch.from_numpy(shifted))
    channel.sub_(offset).mul_(1.0 / window.width).clamp_(0.0, 1.0)


def _fused_window(values: np.ndarray, window: HUWindow, channel: torch.Tensor) -> None:
    """clamp((HU - low edge) * (1 / width), 0, 1) in float32, rounded once to float16, a cache-sized chunk at a time.

    The input is copied chunk by chunk into writable scratch (a cache hit is a read-only memory map, which torch
    cannot wrap), so every voxel is read from memory once and written once.
    """
    scratch = getattr(_SCRATCH, "buffers", None)
    if scratch is None:
        scratch = _SCRATCH.buffers = (np.empty(FUSED_CHUNK, np.int16), torch.empty(FUSED_CHUNK, dtype=torch.float32))
    as_int16, as_float32 = scratch
    int16_view = torch.from_numpy(as_int16)
    flat = values.reshape(-1)  # (I * J * K,) a view of a contiguous volume
    out = channel.view(-1)  # (I * J * K,)
    low_edge = window.level - window.width / 2.0
    for start in range(0, flat.size, FUSED_CHUNK):
        stop = min(start + FUSED_CHUNK, flat.size)
        np.copyto(as_int16[: stop - start], flat[start:stop])
        chunk = as_float32[: stop - start]
        chunk.copy_(int16_view[: stop - start])
        chunk.sub_(low_edge).mul_(1.0 / window.width).clamp_(0.0, 1.0)
        out[start:stop].copy_(chunk)


@functools.lru_cache(maxsize=64)
def _fused_is_exact(window: HUWindow) -> bool:
    """Whether ``_fused_window`` equals ``_window_int16`` bit for bit on all 65536 int16 values (checked once)."""
    every_value = np.arange(-32768, 32768, dtype=np.int16)
    expected = torch.empty(every_value.shape, dtype=torch.float16)
    fused = torch.empty(every_value.shape, dtype=torch.float16)
    _window_int16(every_value, window, expected)
    _fused_window(every_value, window, fused)
    return bool(torch.equal(expected, fused))
