"""Expression values must be real numbers and plausible once normalised; files that are not AnnData, and special
files, are refused with their own reasons (issue 14)."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from medclip.types import ModalityError
from modalities.expression import ExpressionConfig, ExpressionModality
from tests.modalities.expression.writers import GENES, counts, replace_dense_x, replace_sparse_part, write_h5ad


def reason_of(ref, **options) -> str:
    with pytest.raises(ModalityError) as caught:
        ExpressionModality(ExpressionConfig(**options)).load(ref)
    return caught.value.reason


def test_complex_dense_matrix_is_refused(tmp_path):
    path = replace_dense_x(write_h5ad(tmp_path / "c.h5ad", counts()), counts() + 1j * counts())
    assert reason_of(f"{path}#row=0") == "complex_values"


def test_complex_sparse_values_are_refused(tmp_path):
    matrix = sp.csr_matrix(counts())
    path = write_h5ad(tmp_path / "c.h5ad", matrix)
    replace_sparse_part(path, "data", matrix.data.astype(np.complex64) * (1 + 1j))
    assert reason_of(f"{path}#row=0") == "complex_values"


def test_boolean_matrix_is_an_unsupported_dtype(tmp_path):
    path = replace_dense_x(write_h5ad(tmp_path / "c.h5ad", counts()), counts() > 2)
    assert reason_of(f"{path}#row=0") == "unsupported_dtype"


def test_counts_whose_total_overflows_are_non_finite(tmp_path):
    values = np.ones((2, len(GENES)))
    values[0, :3] = 1e308  # each finite; their sum is not, and scaling by target / inf would give silent zeros
    path = replace_dense_x(write_h5ad(tmp_path / "c.h5ad", counts(2)), values)
    assert reason_of(f"{path}#row=0") == "non_finite"


def test_unlogged_normalised_values_are_not_taken_as_log1p(tmp_path):
    tpm = counts(3).astype(np.float64) * 1234.5678  # non-integer and far above any log1p value
    path = write_h5ad(tmp_path / "tpm.h5ad", tpm.astype(np.float32))
    assert reason_of(f"{path}#row=0") == "implausible_values"
    loaded = ExpressionModality(ExpressionConfig(normalization="counts")).load(f"{path}#row=0")
    assert np.isfinite(loaded["expression"]).all()  # the user can say what the values are


def test_hdf5_file_that_is_not_anndata(tmp_path):
    with h5py.File(tmp_path / "plain.h5ad", "w") as handle:
        handle["X"] = counts()
    assert reason_of(f"{tmp_path / 'plain.h5ad'}#row=0") == "not_anndata"


def test_matrix_shapes_that_disagree_with_the_names(tmp_path):
    path = replace_dense_x(write_h5ad(tmp_path / "c.h5ad", counts()), counts(3, len(GENES) + 1))
    assert reason_of(f"{path}#row=0") == "shape_mismatch"
    path = replace_dense_x(write_h5ad(tmp_path / "d.h5ad", counts()), counts(4))
    assert reason_of(f"{path}#row=0") == "shape_mismatch"


def test_a_device_file_named_as_h5ad_is_not_opened(tmp_path):
    (tmp_path / "null.h5ad").symlink_to(os.devnull)
    assert reason_of(f"{tmp_path / 'null.h5ad'}#row=0") == "not_regular_file"
