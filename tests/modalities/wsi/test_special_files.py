"""A FIFO, a device or a folder given as a slide, a feature-cache entry or an .h5ad is refused (``not_regular_file``)
before any library opens it (issue 14): opening a FIFO blocks forever, /dev/zero never ends."""

from __future__ import annotations

import contextlib
import os
import signal

import numpy as np
import pytest

from modalities.wsi import WSIConfig, WSIModality
from modalities.wsi.cache import build_feature_cache, read_features, slide_key
from modalities.wsi.slide import Slide, open_slide
from modalities.wsi.spatial import spot_centres
from tests.helpers import refusal


@contextlib.contextmanager
def within(seconds: int):
    """Fail instead of hanging: a blocked open() is interrupted by the alarm, whose exception propagates."""

    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def specials(tmp_path):
    fifo = tmp_path / "pipe.tiff"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.svs"
    folder.mkdir()
    link = tmp_path / "link.tiff"
    link.symlink_to(fifo)
    return {"fifo": fifo, "folder": folder, "link to a fifo": link, "device": "/dev/zero"}


def test_special_files_are_not_slides(specials):
    plugin = WSIModality(WSIConfig(patch_size=32))
    for name, path in specials.items():
        assert refusal(lambda path=path: plugin.load(path)) == "not_regular_file", name
        assert refusal(lambda path=path: plugin.load(f"{path}#x=0,y=0,level=0,size=32")) == "not_regular_file", name
        assert refusal(lambda path=path: Slide(path)) == "not_regular_file", name
        assert refusal(lambda path=path: open_slide(path)) == "not_regular_file", name


def test_special_files_never_reach_the_feature_cache_or_the_spatial_reader(specials, tmp_path):
    fifo = specials["fifo"]
    assert refusal(lambda: slide_key(fifo)) == "not_regular_file"  # it reads the file's first MiB: a FIFO blocks
    cached = WSIModality(WSIConfig(source="features", feature_dim=8, feature_cache=str(tmp_path)))
    assert refusal(lambda: cached.load(fifo)) == "not_regular_file"
    entry = tmp_path / "slide-0.safetensors"
    os.mkfifo(entry)
    (tmp_path / "slide-0.json").write_text("{}")
    assert refusal(lambda: read_features(entry)) == "not_regular_file"
    h5ad = tmp_path / "spots.h5ad"
    os.mkfifo(h5ad)
    assert refusal(lambda: spot_centres(h5ad)) == "not_regular_file"
    cfg = WSIConfig(patch_encoder="test_resnet", patch_size=32)
    with within(30):
        summary = build_feature_cache([fifo, specials["folder"]], tmp_path / "cache", cfg, batch_size=2)
    assert summary["skipped"] == {"not_regular_file": 2} and summary["written"] == 0


def test_spot_coordinates_are_size_checked_before_they_are_read(tmp_path):
    import anndata
    import pandas as pd

    adata = anndata.AnnData(X=np.ones((3, 2), np.float32), var=pd.DataFrame(index=["a", "b"]))
    adata.obsm["spatial"] = np.arange(6, dtype=np.float64).reshape(3, 2)
    adata.write_h5ad(tmp_path / "spots.h5ad")
    np.testing.assert_array_equal(spot_centres(tmp_path / "spots.h5ad", scale=2.0), np.arange(6).reshape(3, 2) * 2)
    assert refusal(lambda: spot_centres(tmp_path / "spots.h5ad", max_decoded_mb=1e-6)) == "too_large"
