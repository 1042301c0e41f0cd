"""Reading cells out of AnnData ``.h5ad`` files: references, per-process file cache, safe lean access.

A file is opened once per process with h5py and read through anndata's element API (``anndata.io.read_elem`` for
small matrices, ``anndata.io.sparse_dataset`` / h5py row slicing for large ones), so only the chosen matrix, its gene
names and, when needed, the observation names are ever read: ``obsm``, ``obsp`` and other layers stay on disk.
Files with HDF5 external links or virtual datasets are refused, because they make a read reach into other files.

Error messages name the reason and never the observation name or path: cell barcodes and file names can carry
identifiers.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.sparse as sp
from anndata.io import read_elem, sparse_dataset

from medclip.types import ModalityError

from .genes import register_gene_list
from .normalize import detect_kind

# Matrices up to this size are read into memory once (fast row access); larger ones are read row by row from disk.
FULL_READ_BYTES = 256 * 1024**2
# Rows read to tell counts from log-normalised from scaled values; the first rows of a file are representative.
DETECTION_ROWS = 1000
# Files kept open per process; the least recently used one is closed beyond this.
MAX_OPEN_FILES = 32
SPARSE_ENCODINGS = ("csr_matrix", "csc_matrix")
_ROW_SELECTOR = re.compile(r"row=(\d+)")


@dataclass(frozen=True)
class CellReference:
    """One observation of one file: by obs name, by row index, or (both None) the file's only observation."""

    path: Path
    obs: str | None = None
    row: int | None = None


def split_cell(value: str) -> tuple[str, str | None]:
    """``"a/b.h5ad#cell"`` -> ("a/b.h5ad", "cell"); ``"a/b.h5ad"`` -> ("a/b.h5ad", None).

    The split is at the first ``#`` after ``.h5ad``, so obs names may themselves contain ``#``.
    """
    marker = value.lower().find(".h5ad#")
    if marker < 0:
        return value, None
    return value[: marker + len(".h5ad")], value[marker + len(".h5ad#") :]


def parse_reference(value: str, root: str | os.PathLike | None = None) -> CellReference:
    """Parse a manifest cell ``path.h5ad#<obs name>`` / ``path.h5ad#row=<int>`` / ``path.h5ad``.

    Raises:
        ModalityError: ``bad_reference`` when the part after ``#`` is empty.
    """
    path_text, cell = split_cell(str(value).strip())
    path = Path(path_text).expanduser()
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    if cell is None:
        return CellReference(path)
    if not cell:
        raise ModalityError("bad_reference", "expression reference has an empty observation after '#'")
    match = _ROW_SELECTOR.fullmatch(cell)
    if match:
        return CellReference(path, row=int(match.group(1)))
    return CellReference(path, obs=cell)


@contextmanager
def reading() -> Iterator[None]:
    """Turn library errors from h5py/anndata into ``unreadable`` (their messages can include the path)."""
    try:
        yield
    except ModalityError:
        raise
    # RuntimeError: h5py's link/object visitation on a damaged file ("Link visitation failed ...").
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as error:
        raise ModalityError("unreadable", f"could not read the .h5ad file ({type(error).__name__})") from None


def refuse_external_links(handle: h5py.File) -> None:
    """Raise ``external_link`` if any HDF5 external link or virtual dataset would make a read leave the file."""
    found: list[str] = []

    def visit_link(name: str, link: h5py.HardLink | h5py.SoftLink | h5py.ExternalLink) -> bool | None:
        if isinstance(link, h5py.ExternalLink):
            found.append("external link")
            return True
        return None

    def visit_object(name: str, item: h5py.Group | h5py.Dataset) -> bool | None:
        if isinstance(item, h5py.Dataset) and item.is_virtual:
            found.append("virtual dataset")
            return True
        return None

    handle.visititems_links(visit_link)
    if not found:
        handle.visititems(visit_object)
    if found:
        raise ModalityError(
            "external_link", f"the .h5ad file contains an HDF5 {found[0]} into other files; such files are refused"
        )


def read_index(group: h5py.Group) -> np.ndarray:
    """The index (obs or var names) of an AnnData dataframe group, as strings."""
    return np.asarray(read_elem(group[group.attrs["_index"]])).astype(str)


class ExpressionMatrix:
    """One matrix of a file (X, raw or a layer) with its gene names, readable one observation at a time.

    Args:
        element: the h5py dataset (dense) or group (sparse) holding the matrix.
        var: the dataframe group naming its genes (``var`` or ``raw/var``).
    """

    def __init__(self, element: h5py.Dataset | h5py.Group, var: h5py.Group) -> None:
        genes = read_index(var)
        if len(set(genes.tolist())) != len(genes):
            duplicated = len(genes) - len(set(genes.tolist()))
            raise ModalityError(
                "duplicate_genes", f"the gene names of the .h5ad matrix are not unique ({duplicated} duplicates)"
            )
        self.genes_key = register_gene_list(genes.tolist())
        self.n_genes = len(genes)
        self._element = element
        self._on_disk = self._on_disk_matrix(element)
        self._matrix: np.ndarray | sp.csr_matrix | h5py.Dataset | None = None  # opened on the first row read
        if self._on_disk.shape[1] != self.n_genes:
            raise ModalityError("unreadable", "the .h5ad matrix has a different number of columns than gene names")
        self.n_obs = int(self._on_disk.shape[0])
        first_rows = self._on_disk[0 : min(self.n_obs, DETECTION_ROWS)]  # (R, G), read from disk
        self.detected_kind = detect_kind(self._values(first_rows))

    @staticmethod
    def _on_disk_matrix(element: h5py.Dataset | h5py.Group) -> h5py.Dataset | Any:
        """Row-sliceable access without reading the matrix: the h5py dataset, or anndata's sparse dataset."""
        if isinstance(element, h5py.Dataset):
            return element
        if element.attrs.get("encoding-type") not in SPARSE_ENCODINGS:
            raise ModalityError("unreadable", "the .h5ad matrix is stored in an unsupported encoding")
        return sparse_dataset(element)

    def _opened(self) -> np.ndarray | sp.csr_matrix | h5py.Dataset | Any:
        """Small matrices read into memory once (CSC turned into CSR for row access); large ones stay on disk.

        Deferred to the first row read, so a matrix only inspected (``X`` when ``.raw`` is used) is never read whole.
        """
        if self._matrix is None:
            element = self._element
            if isinstance(element, h5py.Dataset):
                stored_bytes = element.nbytes
            else:
                stored_bytes = sum(element[part].nbytes for part in ("data", "indices", "indptr"))
            if stored_bytes > FULL_READ_BYTES:
                self._matrix = self._on_disk
            elif isinstance(element, h5py.Dataset):
                self._matrix = element[()]
            else:
                self._matrix = sp.csr_matrix(read_elem(element))
        return self._matrix

    @staticmethod
    def _values(block: np.ndarray | sp.spmatrix) -> np.ndarray:
        """The stored values of a block of rows (sparse: the non-zeros; implicit zeros never decide the kind)."""
        return np.asarray(block.data if sp.issparse(block) else block, dtype=np.float64).ravel()

    def row(self, index: int) -> np.ndarray:
        """Observation ``index`` as a dense (G,) float64 vector in this matrix's gene order."""
        block = self._opened()[index : index + 1]  # (1, G)
        if sp.issparse(block):
            block = block.toarray()
        return np.asarray(block, dtype=np.float64).reshape(-1)  # (G,)


# Where each named matrix and its gene names live inside an .h5ad file; any other name is a key of `layers`.
MATRIX_LOCATIONS: dict[str, tuple[str, str]] = {"X": ("X", "var"), "raw": ("raw/X", "raw/var")}


class H5adFile:
    """An open ``.h5ad`` file: observation lookup and its matrices, each read once.

    Raises:
        ModalityError: ``missing_file``, ``unreadable`` or ``external_link``.
    """

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ModalityError("missing_file", "expression .h5ad file not found")
        with reading():
            self._handle = h5py.File(path, "r")
        try:
            with reading():
                refuse_external_links(self._handle)
                obs = self._handle["obs"]
                self.n_obs = int(obs[obs.attrs["_index"]].shape[0])
        except ModalityError:
            self._handle.close()
            raise
        self._obs_rows: dict[str, int] | None = None
        self._duplicate_obs: set[str] = set()
        self._matrices: dict[str, ExpressionMatrix] = {}

    def has_matrix(self, name: str) -> bool:
        location, _ = MATRIX_LOCATIONS.get(name, (f"layers/{name}", "var"))
        return location in self._handle

    def matrix(self, name: str) -> ExpressionMatrix:
        """The matrix ``name`` ("X", "raw" or a ``layers`` key), opened on first use.

        Raises:
            ModalityError: ``missing_layer`` when the file has no such matrix.
        """
        if name not in self._matrices:
            location, var_location = MATRIX_LOCATIONS.get(name, (f"layers/{name}", "var"))
            if location not in self._handle:
                raise ModalityError("missing_layer", f"the .h5ad file has no {name!r} matrix (configured layer)")
            with reading():
                matrix = ExpressionMatrix(self._handle[location], self._handle[var_location])
            if matrix.n_obs != self.n_obs:
                raise ModalityError("unreadable", "the .h5ad matrix has a different number of rows than observations")
            self._matrices[name] = matrix
        return self._matrices[name]

    def row_of(self, reference: CellReference) -> int:
        """The row index of the referenced observation.

        Raises:
            ModalityError: ``missing_observation`` (name not found, row out of range, or no observation named in a
                file holding several) or ``duplicate_observation`` (the name occurs more than once).
        """
        if reference.row is not None:
            if not 0 <= reference.row < self.n_obs:
                raise ModalityError(
                    "missing_observation", f"row index out of range: the file holds {self.n_obs} observations"
                )
            return reference.row
        if reference.obs is None:
            if self.n_obs != 1:
                raise ModalityError(
                    "missing_observation",
                    f"the file holds {self.n_obs} observations; name one as file.h5ad#row=<index> or #<obs name>",
                )
            return 0
        rows = self._observation_rows()
        if reference.obs in self._duplicate_obs:
            raise ModalityError("duplicate_observation", "the observation name occurs more than once in the file")
        if reference.obs not in rows:
            raise ModalityError("missing_observation", "observation name not found in the file")
        return rows[reference.obs]

    def _observation_rows(self) -> dict[str, int]:
        if self._obs_rows is None:
            with reading():
                names = read_index(self._handle["obs"])
            rows: dict[str, int] = {}
            for index, name in enumerate(names.tolist()):
                if name in rows:
                    self._duplicate_obs.add(name)
                rows.setdefault(name, index)
            self._obs_rows = rows
        return self._obs_rows

    def close(self) -> None:
        self._handle.close()


def choose_matrix(opened: H5adFile, layer: str) -> ExpressionMatrix:
    """The matrix a ``layer`` setting means for this file.

    ``"auto"`` takes ``X``, unless ``X`` holds scaled (z-scored) values and the file keeps ``.raw``: then ``.raw``,
    because scaled data has lost each cell's expression level, which is what the model should see.
    """
    if layer != "auto":
        return opened.matrix(layer)
    matrix = opened.matrix("X")
    if matrix.detected_kind == "scaled" and opened.has_matrix("raw"):
        return opened.matrix("raw")
    return matrix


_OPEN_FILES: OrderedDict[str, H5adFile] = OrderedDict()
_OPEN_FILES_PID = os.getpid()


def open_h5ad(path: str | os.PathLike) -> H5adFile:
    """The cached open file for ``path`` in this process (DataLoader workers reopen: h5py handles do not survive fork).

    Raises:
        ModalityError: ``missing_file``, ``unreadable`` or ``external_link``.
    """
    global _OPEN_FILES_PID
    if os.getpid() != _OPEN_FILES_PID:  # a forked worker: the parent's handles are not safe to use here
        _OPEN_FILES.clear()
        _OPEN_FILES_PID = os.getpid()
    key = str(Path(path).expanduser().absolute())
    if key in _OPEN_FILES:
        _OPEN_FILES.move_to_end(key)
        return _OPEN_FILES[key]
    opened = H5adFile(Path(key))
    _OPEN_FILES[key] = opened
    while len(_OPEN_FILES) > MAX_OPEN_FILES:
        _, oldest = _OPEN_FILES.popitem(last=False)
        oldest.close()
    return opened


def expression_refs(h5ad_path: str | os.PathLike) -> list[str]:
    """One manifest cell per observation of a file, ``"<path>#row=<i>"``.

    Row references are preferred over obs names in manifests because obs names (cell barcodes, sample names) can be
    identifiers.
    """
    opened = open_h5ad(h5ad_path)
    return [f"{h5ad_path}#row={index}" for index in range(opened.n_obs)]
