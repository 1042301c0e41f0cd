"""Real ``.h5ad`` files for the robustness tests and the crafted inputs: written by anndata, then (for hostile
variants) one element rewritten with h5py the way a broken or crafted file would hold it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

GENES = [f"GENE{index}" for index in range(12)]


def counts(n_obs: int = 3, n_genes: int = len(GENES), seed: int = 0) -> np.ndarray:
    """(N, G) float32 counts with no all-zero observation."""
    rng = np.random.default_rng(seed)
    return rng.negative_binomial(2, 0.3, size=(n_obs, n_genes)).astype(np.float32) + np.eye(n_obs, n_genes)


def write_h5ad(path: Path, matrix, genes: Sequence[str] = GENES) -> Path:
    """An AnnData file with barcode-like obs names, written by anndata."""
    import anndata as ad
    import pandas as pd

    obs = pd.DataFrame(index=[f"BARCODE-{index:04d}" for index in range(matrix.shape[0])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=list(genes))).write_h5ad(path)
    return path


def replace_dense_x(path: Path, values: np.ndarray | None = None, **dataset_options) -> Path:
    """Replace ``X`` by a dense dataset (``values``, or ``dataset_options`` such as an unwritten huge shape)."""
    import h5py

    with h5py.File(path, "a") as handle:
        del handle["X"]
        if values is not None:
            dataset = handle.create_dataset("X", data=values, **dataset_options)
        else:
            dataset = handle.create_dataset("X", **dataset_options)
        dataset.attrs["encoding-type"] = "array"
        dataset.attrs["encoding-version"] = "0.2.0"
    return path


def replace_sparse_part(path: Path, part: str, values: np.ndarray) -> Path:
    """Overwrite one array (``data``, ``indices`` or ``indptr``) of a sparse ``X``."""
    import h5py

    with h5py.File(path, "a") as handle:
        del handle[f"X/{part}"]
        handle.create_dataset(f"X/{part}", data=values)
    return path


def replace_index(path: Path, group: str, length: int) -> Path:
    """Replace ``group``'s name index by ``length`` names that are declared but never written (chunked, compressed:
    a few kilobytes on disk, however long)."""
    import h5py

    with h5py.File(path, "a") as handle:
        key = handle[group].attrs["_index"]
        del handle[f"{group}/{key}"]
        dataset = handle[group].create_dataset(
            key, shape=(length,), dtype=h5py.string_dtype(), chunks=(min(length, 65536),), compression="gzip"
        )
        dataset.attrs["encoding-type"] = "string-array"
        dataset.attrs["encoding-version"] = "0.2.0"
    return path
