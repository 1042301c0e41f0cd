"""Reading rows of an ``.h5ad`` matrix without trusting what the file declares.

An HDF5 file is small on disk and large in memory when it wants to be: a compressed chunk of zeros decompresses to
gigabytes, a sparse matrix's ``shape`` attribute or pointer array can declare any size, one very long name widens
every entry of a fixed-width string array, and sparse ``indices`` outside the matrix make SciPy write outside its
array (a segmentation fault, not an exception). So before any read:

- value dtypes must be real numbers (``complex_values``, ``unsupported_dtype``);
- every dataset read from has chunks that fit the budget (HDF5 decompresses a whole chunk to read one row);
- name indices, detection blocks, rows and sparse slices are sized against ``max_decoded_mb`` (``too_large``);
- sparse pointers must be non-decreasing and inside the data, and indices inside the matrix (``corrupt_sparse``),
  checked on exactly the slice read before SciPy sees it.

Three row sources share one method, ``block(start, stop) -> (R, G) float64``: a dense dataset, a CSR group read slice
by slice, and a matrix validated and held in memory (small matrices, and CSC, whose rows touch every column).
"""

from __future__ import annotations

import math
from typing import Protocol

import h5py
import numpy as np
import scipy.sparse as sp

from medclip.data.safe_io import MEGABYTE, TOO_LARGE, check_decoded_size
from medclip.types import ModalityError

COMPLEX_VALUES = "complex_values"
UNSUPPORTED_DTYPE = "unsupported_dtype"
CORRUPT_SPARSE = "corrupt_sparse"
SHAPE_MISMATCH = "shape_mismatch"
NAME_BYTES = 64  # memory of one observation or gene name once read (a Python str), at least
VALIDATION_CHUNK = 1 << 22  # sparse indices checked this many at a time when a whole matrix is validated


class RowSource(Protocol):
    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a dense (R, G) float64 array."""
        ...


def check_values_dtype(dtype: np.dtype, what: str = "expression matrix") -> None:
    """Expression values must be real numbers: a complex matrix would lose its imaginary part silently.

    Raises:
        ModalityError: ``complex_values`` or ``unsupported_dtype`` (booleans, strings, compound types).
    """
    if dtype.kind == "c":
        raise ModalityError(COMPLEX_VALUES, f"the {what} holds complex numbers; only real values are read")
    if dtype.kind not in "iuf":
        raise ModalityError(UNSUPPORTED_DTYPE, f"the {what} does not hold integers or floating-point numbers")


def check_index_dtype(dataset: h5py.Dataset, what: str) -> None:
    if dataset.dtype.kind not in "iu" or dataset.ndim != 1:
        raise ModalityError(CORRUPT_SPARSE, f"the sparse matrix's {what} are not a 1-D integer array")


def check_chunks(dataset: h5py.Dataset, budget_mb: float) -> None:
    """Refuse a dataset whose HDF5 chunk (decompressed whole to read any part of it) exceeds the budget."""
    if dataset.chunks is not None:
        check_decoded_size(dataset.chunks, dataset.dtype.itemsize, budget_mb, "HDF5 chunk of the .h5ad file")


def read_names(group: h5py.Group, budget_mb: float) -> list[str]:
    """The index (obs or var names) of an AnnData dataframe group, as Python strings.

    Sized from the dataset's shape before reading, and never turned into a fixed-width string array (one very long
    name would make every entry that wide).

    Raises:
        ModalityError: ``unsupported_encoding`` (the index is not a 1-D dataset) or ``too_large``.
    """
    from anndata.io import read_elem

    dataset = group[group.attrs["_index"]]
    if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 1:
        raise ModalityError("unsupported_encoding", "the .h5ad index of names is not a 1-D array")
    check_decoded_size(dataset.shape, max(dataset.dtype.itemsize, NAME_BYTES), budget_mb, "names of the .h5ad file")
    check_chunks(dataset, budget_mb)
    values = np.asarray(read_elem(dataset)).ravel().tolist()
    return [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value) for value in values]


def sparse_shape(group: h5py.Group) -> tuple[int, int]:
    """The (rows, columns) a sparse group declares, as Python integers."""
    shape = tuple(int(dim) for dim in np.asarray(group.attrs["shape"]).ravel().tolist())
    if len(shape) != 2 or min(shape) < 0:
        raise ModalityError(SHAPE_MISMATCH, "the sparse .h5ad matrix does not declare a 2-D shape")
    return shape  # type: ignore[return-value]


class DenseRows:
    """Rows of a dense 2-D dataset, read slice by slice."""

    def __init__(self, dataset: h5py.Dataset, budget_mb: float) -> None:
        if dataset.ndim != 2:
            raise ModalityError(SHAPE_MISMATCH, "the dense .h5ad matrix is not 2-D")
        check_values_dtype(dataset.dtype)
        check_chunks(dataset, budget_mb)
        self.dataset = dataset
        self.shape = tuple(int(dim) for dim in dataset.shape)

    def block(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.dataset[start:stop], dtype=np.float64)  # (R, G)


class SparseParts:
    """The three arrays of a sparse group, checked for dtype, dimensions, chunk sizes and matching lengths."""

    def __init__(self, group: h5py.Group, budget_mb: float) -> None:
        self.data, self.indices, self.indptr = (group[part] for part in ("data", "indices", "indptr"))
        if self.data.ndim != 1:
            raise ModalityError(CORRUPT_SPARSE, "the sparse matrix's data are not a 1-D array")
        check_values_dtype(self.data.dtype)
        check_index_dtype(self.indices, "indices")
        check_index_dtype(self.indptr, "pointers")
        if self.indices.shape != self.data.shape:
            raise ModalityError(CORRUPT_SPARSE, "the sparse matrix has different numbers of values and indices")
        for dataset in (self.data, self.indices, self.indptr):
            check_chunks(dataset, budget_mb)
        self.nnz = int(self.data.shape[0])
        self.entry_bytes = self.data.dtype.itemsize + self.indices.dtype.itemsize


def check_pointers(pointers: np.ndarray, nnz: int) -> None:
    """Sparse pointers must be non-decreasing and inside the stored values (else SciPy reads out of bounds)."""
    if pointers.size and (pointers[0] < 0 or pointers[-1] > nnz or (np.diff(pointers) < 0).any()):
        raise ModalityError(CORRUPT_SPARSE, "the sparse matrix's pointers are out of order or past its values")


def check_indices(indices: np.ndarray, minor: int) -> None:
    """Sparse indices must lie inside the matrix (else SciPy writes outside its array: a crash, not an error)."""
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= minor):
        raise ModalityError(CORRUPT_SPARSE, "the sparse matrix has indices outside its shape")


class CsrRows:
    """Rows of a CSR group on disk: each slice's pointers, then its values and indices, read and checked."""

    def __init__(self, group: h5py.Group, budget_mb: float) -> None:
        self.parts = SparseParts(group, budget_mb)
        self.shape = sparse_shape(group)
        self.budget_mb = budget_mb
        if self.parts.indptr.shape[0] != self.shape[0] + 1:
            raise ModalityError(CORRUPT_SPARSE, "the sparse matrix's pointers do not match its number of rows")

    def block(self, start: int, stop: int) -> np.ndarray:
        pointers = np.asarray(self.parts.indptr[start : stop + 1], dtype=np.int64)  # (R + 1,)
        check_pointers(pointers, self.parts.nnz)
        count = int(pointers[-1] - pointers[0])
        check_decoded_size((count,), self.parts.entry_bytes, self.budget_mb, "sparse rows of the .h5ad file")
        check_decoded_size((stop - start, self.shape[1]), 8, self.budget_mb, "dense rows of the .h5ad file")
        values = np.asarray(self.parts.data[pointers[0] : pointers[-1]], dtype=np.float64)
        indices = np.asarray(self.parts.indices[pointers[0] : pointers[-1]], dtype=np.int64)
        check_indices(indices, self.shape[1])
        rows = sp.csr_matrix((values, indices, pointers - pointers[0]), shape=(stop - start, self.shape[1]))
        return rows.toarray()  # (R, G)


class InMemoryRows:
    """A whole matrix read once (small matrices, and CSC whose rows touch every column), validated before SciPy
    indexes it."""

    def __init__(self, matrix: np.ndarray | sp.csr_matrix) -> None:
        self.matrix = matrix
        self.shape = tuple(int(dim) for dim in matrix.shape)

    @classmethod
    def dense(cls, dataset: h5py.Dataset, budget_mb: float) -> InMemoryRows:
        DenseRows(dataset, budget_mb)  # the same checks
        check_decoded_size(dataset.shape, dataset.dtype.itemsize, budget_mb, "dense .h5ad matrix")
        return cls(dataset[()])

    @classmethod
    def sparse(cls, group: h5py.Group, budget_mb: float) -> InMemoryRows:
        """Read a CSR or CSC group whole (within the budget), check every pointer and index, return it as CSR."""
        parts = SparseParts(group, budget_mb)
        rows, columns = sparse_shape(group)
        compressed = group.attrs.get("encoding-type") == "csc_matrix"
        major, minor = (columns, rows) if compressed else (rows, columns)
        if parts.indptr.shape[0] != major + 1:
            raise ModalityError(CORRUPT_SPARSE, "the sparse matrix's pointers do not match its shape")
        stored = parts.nnz * parts.entry_bytes + (major + 1) * parts.indptr.dtype.itemsize
        if stored > budget_mb * MEGABYTE:
            raise ModalityError(TOO_LARGE, f"the sparse .h5ad matrix takes {stored / MEGABYTE:.0f} MB, over the budget")
        pointers = np.asarray(parts.indptr[()], dtype=np.int64)
        if pointers.size and pointers[0] != 0:
            raise ModalityError(CORRUPT_SPARSE, "the sparse matrix's pointers do not start at zero")
        check_pointers(pointers, parts.nnz)
        if int(pointers[-1]) != parts.nnz:
            raise ModalityError(CORRUPT_SPARSE, "the sparse matrix's pointers do not cover its values")
        for begin in range(0, parts.nnz, VALIDATION_CHUNK):
            check_indices(np.asarray(parts.indices[begin : begin + VALIDATION_CHUNK]), minor)
        kind = sp.csc_matrix if compressed else sp.csr_matrix
        matrix = kind((parts.data[()], parts.indices[()], pointers), shape=(rows, columns))
        return cls(sp.csr_matrix(matrix))

    def block(self, start: int, stop: int) -> np.ndarray:
        rows = self.matrix[start:stop]
        return np.asarray(rows.toarray() if sp.issparse(rows) else rows, dtype=np.float64)  # (R, G)


def detection_rows(n_obs: int, n_genes: int, wanted: int, budget_mb: float) -> int:
    """How many leading rows to read for telling counts from log-normalised from scaled values: ``wanted``, fewer
    when a row is so wide that ``wanted`` rows of float64 would exceed the budget (at least one: ``too_large`` when
    even one does not fit)."""
    check_decoded_size((1, n_genes), 8, budget_mb, "one observation of the .h5ad matrix")
    fitting = math.floor(budget_mb * MEGABYTE / max(1, 8 * n_genes))
    return max(1, min(n_obs, wanted, fitting))
