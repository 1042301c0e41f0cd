"""The fused HU-window route (modalities/ct/windows.py) gives bit-identical float16 to the int16 definition, on
arrays and on cache memory maps, from concurrent loader threads, and falls back where it would not be exact."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

from modalities.ct.windows import (
    CT_HU_WINDOWS,
    FUSED_CHUNK,
    _fused_is_exact,
    _window_int16,
    parse_window,
    windows_to_float16,
)


def _definition(values: np.ndarray, windows) -> torch.Tensor:
    expected = torch.empty((len(windows), *values.shape), dtype=torch.float16)  # (C, I, J, K)
    for channel, window in zip(expected, windows, strict=True):
        _window_int16(np.asarray(values), window, channel)
    return expected


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """int16 HU over the whole CT range and beyond, sized to end in a partial chunk."""
    rng = np.random.default_rng(11)
    count = 2 * FUSED_CHUNK + 1234
    values = rng.integers(-3000, 4000, size=count).astype(np.int16)
    values[:6] = [-32768, 32767, -1350, 150, -1351, 151]  # int16 extremes and the lung window's edges
    return values.reshape(count // 2, 2, 1)  # (I, J, K)


def test_named_windows_are_fused_and_bit_identical(volume, tmp_path):
    windows = [CT_HU_WINDOWS.get(name) for name in ("lung", "mediastinum", "bone", "abdomen", "brain", "liver")]
    assert all(_fused_is_exact(window) for window in windows)
    expected = _definition(volume, windows)
    path = tmp_path / "entry.npy"
    np.save(path, volume)
    mapped = np.load(path, mmap_mode="r")  # a cache hit is a read-only memory map
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a read-only array; the fused route must not
        got = windows_to_float16(mapped, windows)
    assert got.dtype == torch.float16 and got.shape == (len(windows), *volume.shape)
    assert torch.equal(got, expected)
    assert torch.equal(windows_to_float16(volume, windows), expected)


def test_windows_where_fusing_would_round_differently_use_the_definition(volume):
    odd = [parse_window("-600.5:1500"), parse_window("100:4000")]  # fractional low edge; wider than float16's 2048
    assert not any(_fused_is_exact(window) for window in odd)
    assert torch.equal(windows_to_float16(volume, odd), _definition(volume, odd))


def test_concurrent_threads_get_their_own_results(volume):
    windows = {name: [CT_HU_WINDOWS.get(name)] for name in ("lung", "bone", "brain", "liver")}
    expected = {name: _definition(volume, chosen) for name, chosen in windows.items()}
    failures = []

    def work(name: str) -> None:
        for _ in range(5):
            if not torch.equal(windows_to_float16(volume, windows[name]), expected[name]):
                failures.append(name)

    threads = [threading.Thread(target=work, args=(name,)) for name in windows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
