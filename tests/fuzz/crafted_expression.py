"""Crafted expression inputs (issue 14): special files named ``.h5ad``, HDF5 elements that declare far more than the
file holds (name indices, rows, chunks), corrupt sparse structure that crashed SciPy, complex and non-numeric
matrices, values implausible once normalised, files that are not AnnData. Written by anndata, then edited with
h5py."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from modalities.expression.synthetic import synthetic_gene_names
from tests.fuzz.crafted import LOADS, Crafted
from tests.modalities.expression.writers import (
    GENES,
    counts,
    replace_dense_x,
    replace_index,
    replace_sparse_part,
    write_h5ad,
)

SHARED_GENES = synthetic_gene_names()  # the harness fits the vocabulary on synthetic cells: loadable files share them


def _fifo(path: Path) -> Path:
    if not path.exists():
        os.mkfifo(path)
    return path


def _link(path: Path, target: str) -> Path:
    if not path.is_symlink():
        path.symlink_to(target)
    return path


def _sparse(path: Path) -> Path:
    matrix = sp.csr_matrix(([1.0, 2.0, 3.0], ([0, 1, 2], [0, 3, 5])), shape=(3, len(GENES)), dtype=np.float32)
    return write_h5ad(path, matrix)


def cases(root: Path) -> list[Crafted]:
    found: list[Crafted] = []
    write_h5ad(root / "good.h5ad", counts(), SHARED_GENES[: len(GENES)])  # genes the fitted vocabulary knows
    found.append(Crafted("expression_good", "expression", "good.h5ad#row=1", (LOADS,)))

    # --- special files: HDF5 would block on a FIFO or read a device without end -----------------------------------
    _fifo(root / "fifo.h5ad")
    found.append(Crafted("expression_fifo", "expression", "fifo.h5ad#row=0", ("not_regular_file",), seconds=10))
    _link(root / "zero.h5ad", "/dev/zero")
    found.append(Crafted("expression_dev_zero", "expression", "zero.h5ad#row=0", ("not_regular_file",), seconds=10))
    _link(root / "urandom.h5ad", "/dev/urandom")
    found.append(Crafted("expression_dev_urandom", "expression", "urandom.h5ad", ("not_regular_file",), seconds=10))

    # --- declared sizes: checked before reading or densifying ----------------------------------------------------
    replace_index(write_h5ad(root / "many_genes.h5ad", counts()), "var", 100_000_000)  # ~6 GB of names
    found.append(Crafted("expression_gene_index_declares_1e8", "expression", "many_genes.h5ad#row=0", ("too_large",)))
    path = write_h5ad(root / "wide.h5ad", counts(1))
    replace_index(path, "var", 50_000_000)
    replace_dense_x(path, shape=(1, 50_000_000), dtype="f4", chunks=(1, 1 << 20), compression="gzip")
    found.append(Crafted("expression_dense_row_declares_5e7_genes", "expression", "wide.h5ad", ("too_large",)))
    path = write_h5ad(root / "chunk.h5ad", counts(2))
    options = {"maxshape": (None, len(GENES)), "chunks": (1 << 20, len(GENES)), "compression": "gzip"}
    replace_dense_x(path, counts(2).astype(np.float64), **options)  # one 96 MB chunk holds both rows
    found.append(
        Crafted(
            "expression_chunk_over_budget", "expression", "chunk.h5ad#row=0", ("too_large",), {"max_decoded_mb": 16}
        )
    )
    genes = [*SHARED_GENES, *(f"G{index}" for index in range(5000 - len(SHARED_GENES)))]
    genes[7] = "X" * 1_000_000  # as a fixed-width array: 5000 names of 4 MB
    long_name = sp.csr_matrix(([3.0, 1.0], ([0, 0], [1, 7])), shape=(1, len(genes)), dtype=np.float32)
    write_h5ad(root / "long_name.h5ad", long_name, genes)
    found.append(Crafted("expression_one_long_gene_name", "expression", "long_name.h5ad", (LOADS,)))

    # --- sparse structure: validated before SciPy indexes it (out-of-range indices crashed the process) -----------
    replace_sparse_part(_sparse(root / "index_out.h5ad"), "indices", np.array([0, 3, 50_000_000], dtype=np.int32))
    found.append(
        Crafted("expression_sparse_index_out_of_range", "expression", "index_out.h5ad#row=2", ("corrupt_sparse",))
    )
    replace_sparse_part(_sparse(root / "backwards.h5ad"), "indptr", np.array([0, 2, 1, 3], dtype=np.int64))
    found.append(
        Crafted("expression_sparse_pointers_backwards", "expression", "backwards.h5ad#row=1", ("corrupt_sparse",))
    )
    replace_sparse_part(_sparse(root / "past.h5ad"), "indptr", np.array([0, 1, 2, 10**9], dtype=np.int64))
    found.append(
        Crafted("expression_sparse_pointers_past_values", "expression", "past.h5ad#row=2", ("corrupt_sparse",))
    )
    path = _sparse(root / "shape.h5ad")
    with h5py.File(path, "a") as handle:
        handle["X"].attrs["shape"] = (3, 10**12)
    found.append(
        Crafted("expression_sparse_shape_declares_1e12_genes", "expression", "shape.h5ad#row=0", ("shape_mismatch",))
    )

    # --- values: real numbers, plausible once normalised -------------------------------------------------------------
    replace_dense_x(write_h5ad(root / "complex.h5ad", counts()), counts() * (1 + 1j))
    found.append(Crafted("expression_complex_dense", "expression", "complex.h5ad#row=0", ("complex_values",)))
    path = _sparse(root / "complex_sparse.h5ad")
    replace_sparse_part(path, "data", np.array([1, 2, 3], dtype=np.complex64) * (1 + 1j))
    found.append(Crafted("expression_complex_sparse", "expression", "complex_sparse.h5ad#row=0", ("complex_values",)))
    replace_dense_x(write_h5ad(root / "strings.h5ad", counts()), np.full((3, len(GENES)), b"7"))
    found.append(Crafted("expression_string_matrix", "expression", "strings.h5ad#row=0", ("unsupported_dtype",)))
    overflow = np.ones((2, len(GENES)))
    overflow[0, :3] = 1e308
    replace_dense_x(write_h5ad(root / "overflow.h5ad", counts(2)), overflow)
    found.append(Crafted("expression_total_overflows", "expression", "overflow.h5ad#row=0", ("non_finite",)))
    write_h5ad(root / "tpm.h5ad", (counts() * 1234.5678).astype(np.float32))
    found.append(Crafted("expression_unlogged_values", "expression", "tpm.h5ad#row=0", ("implausible_values",)))

    # --- not AnnData ---------------------------------------------------------------------------------------------
    with h5py.File(root / "plain.h5ad", "w") as handle:
        handle["X"] = counts()
    found.append(Crafted("expression_plain_hdf5", "expression", "plain.h5ad#row=0", ("not_anndata",)))
    (root / "text.h5ad").write_text("not HDF5")
    found.append(Crafted("expression_not_hdf5", "expression", "text.h5ad#row=0", ("unreadable",)))
    return found
