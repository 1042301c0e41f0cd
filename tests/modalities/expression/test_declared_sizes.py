"""What an ``.h5ad`` file declares is sized against ``max_decoded_mb`` before it is read: name indices, row widths,
HDF5 chunks; sparse structure is validated before SciPy indexes it (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from medclip.types import ModalityError
from modalities.expression import ExpressionConfig, ExpressionModality
from tests.modalities.expression.writers import (
    GENES,
    counts,
    replace_dense_x,
    replace_index,
    replace_sparse_part,
    write_h5ad,
)


def reason_of(ref, **options) -> str:
    with pytest.raises(ModalityError) as caught:
        ExpressionModality(ExpressionConfig(**options)).load(ref)
    assert "BARCODE" not in str(caught.value) and "pytest-of" not in str(caught.value)
    return caught.value.reason


def test_gene_index_declaring_millions_of_names_is_refused_before_reading(tmp_path):
    path = replace_index(write_h5ad(tmp_path / "c.h5ad", counts()), "var", 1_000_000)  # ~64 MB of names
    assert reason_of(f"{path}#row=0", max_decoded_mb=16) == "too_large"


def test_observation_index_is_sized_before_reading(tmp_path):
    import h5py

    rows = 1_000_000  # names declared, never written: ~64 MB once read
    first = sp.csr_matrix(counts(1))
    path = write_h5ad(tmp_path / "c.h5ad", first)
    replace_sparse_part(path, "indptr", np.concatenate([[0], np.full(rows, first.nnz)]).astype(np.int64))
    with h5py.File(path, "a") as handle:
        handle["X"].attrs["shape"] = (rows, len(GENES))
    replace_index(path, "obs", rows)
    assert ExpressionModality(ExpressionConfig(max_decoded_mb=16)).load(f"{path}#row=0")["expression"].size == 12
    assert reason_of(f"{path}#BARCODE-0001", max_decoded_mb=16) == "too_large"  # a lookup by name reads them


def test_row_wider_than_the_budget_is_refused(tmp_path):
    genes = [f"G{index}" for index in range(200_000)]  # one row: 1.6 MB as float64
    matrix = sp.csr_matrix(([1.0], ([0], [5])), shape=(1, len(genes)), dtype=np.float32)
    path = write_h5ad(tmp_path / "wide.h5ad", matrix, genes)
    assert reason_of(path, max_decoded_mb=1) == "too_large"
    assert ExpressionModality().load(path)["expression"].shape == (len(genes),)


def test_hdf5_chunk_larger_than_the_budget_is_refused(tmp_path):
    # Two rows stored in one chunk of 2^20 rows: HDF5 decompresses 96 MB to read either.
    path = write_h5ad(tmp_path / "c.h5ad", counts(2))
    options = {"maxshape": (None, len(GENES)), "chunks": (1 << 20, len(GENES)), "compression": "gzip"}
    replace_dense_x(path, counts(2).astype(np.float64), **options)
    assert reason_of(f"{path}#row=0", max_decoded_mb=16) == "too_large"


def test_one_very_long_gene_name_is_not_widened_to_every_name(tmp_path):
    genes = [f"G{index}" for index in range(2000)]
    genes[7] = "X" * 1_000_000  # as a fixed-width array, 2000 names of 4 MB each: 8 GB
    matrix = sp.csr_matrix(([3.0, 1.0], ([0, 0], [1, 7])), shape=(1, len(genes)), dtype=np.float32)
    path = write_h5ad(tmp_path / "long.h5ad", matrix, genes)
    assert ExpressionModality().load(path)["expression"].shape == (len(genes),)


@pytest.mark.parametrize(
    "part,values",
    [
        ("indices", np.array([0, 5_000_000], dtype=np.int32)),  # SciPy would write outside its array (a crash)
        ("indices", np.array([0, -3], dtype=np.int32)),
        ("indptr", np.array([0, 2, 1, 2], dtype=np.int64)),  # pointers going backwards
        ("indptr", np.array([0, 1, 2, 90], dtype=np.int64)),  # past the stored values
        ("indptr", np.array([0, 2], dtype=np.int64)),  # fewer pointers than rows
        ("indices", np.array([0.5, 1.5])),  # indices that are not integers
    ],
)
@pytest.mark.parametrize("read_whole", [True, False])
def test_corrupt_sparse_structure_is_refused(tmp_path, monkeypatch, part, values, read_whole):
    from modalities.expression import reader

    if not read_whole:
        monkeypatch.setattr(reader, "FULL_READ_BYTES", 0)  # rows read from disk one by one
    matrix = sp.csr_matrix(([1.0, 2.0], ([0, 1], [0, 3])), shape=(3, len(GENES)), dtype=np.float32)
    path = write_h5ad(tmp_path / "s.h5ad", matrix)
    replace_sparse_part(path, part, values)
    if part == "indptr" and values.size == 4:  # indptr of three rows: refused when a row is read
        assert reason_of(f"{path}#row=1") == "corrupt_sparse"
    else:
        assert reason_of(f"{path}#row=0") == "corrupt_sparse"
