"""Reading cells out of AnnData ``.h5ad`` files: references, per-process file cache, safe lean access.

A file is opened once per process with h5py (and reopened when it is replaced under the same name); only the chosen
matrix, its gene names and, when needed, the observation names are ever read: ``obsm``, ``obsp`` and other layers
stay on disk. Small matrices are read whole once, large ones row by row (``storage.py``, which sizes every read
against ``max_decoded_mb`` and validates sparse structure before SciPy touches it). Only regular files are opened.
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

import h5py
import numpy as np

from medclip.data.safe_io import MEGABYTE, require_regular_file
from medclip.types import ModalityError

from .genes import register_gene_list
from .normalize import detect_kind
from .storage import SHAPE_MISMATCH, CsrRows, DenseRows, InMemoryRows, RowSource, detection_rows, read_names

# Matrices up to this size are read into memory once (fast row access); larger ones are read row by row from disk.
FULL_READ_BYTES = 256 * 1024**2
# Rows read to tell counts from log-normalised from scaled values; the first rows of a file are representative.
DETECTION_ROWS = 1000
# Files kept open per process; the least recently used one is closed beyond this.
MAX_OPEN_FILES = 32
SPARSE_ENCODINGS = ("csr_matrix", "csc_matrix")
DEFAULT_BUDGET_MB = 2048.0  # ModalityConfig.max_decoded_mb's default
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


class ExpressionMatrix:
    """One matrix of a file (X, raw or a layer) with its gene names, readable one observation at a time.

    Args:
        element: the h5py dataset (dense) or group (sparse) holding the matrix.
        var: the dataframe group naming its genes (``var`` or ``raw/var``).
        budget_mb: the modality's ``max_decoded_mb``: names, detection rows and rows are sized against it before
            they are read (``storage.py``).
    """

    def __init__(self, element: h5py.Dataset | h5py.Group, var: h5py.Group, budget_mb: float) -> None:
        genes = read_names(var, budget_mb)
        if len(set(genes)) != len(genes):
            duplicated = len(genes) - len(set(genes))
            raise ModalityError(
                "duplicate_genes", f"the gene names of the .h5ad matrix are not unique ({duplicated} duplicates)"
            )
        self.genes_key = register_gene_list(genes)
        self.n_genes = len(genes)
        self._element = element
        self._budget_mb = budget_mb
        self._on_disk = self._on_disk_rows(element, budget_mb)
        self._rows: RowSource | None = None  # chosen on the first row read
        if self._on_disk.shape[1] != self.n_genes:
            raise ModalityError(SHAPE_MISMATCH, "the .h5ad matrix has a different number of columns than gene names")
        self.n_obs = int(self._on_disk.shape[0])
        rows = detection_rows(self.n_obs, self.n_genes, DETECTION_ROWS, budget_mb)
        first_rows = self._first_rows(rows)  # (R, G)
        self.detected_kind = detect_kind(first_rows[np.nonzero(first_rows)] if self._sparse else first_rows.ravel())

    @property
    def _sparse(self) -> bool:
        return isinstance(self._element, h5py.Group)

    @staticmethod
    def _on_disk_rows(element: h5py.Dataset | h5py.Group, budget_mb: float) -> DenseRows | CsrRows | InMemoryRows:
        """Row access without reading the matrix: the dense dataset or the CSR group; CSC (whose rows touch every
        column) is read once, within the budget."""
        if isinstance(element, h5py.Dataset):
            return DenseRows(element, budget_mb)
        encoding = element.attrs.get("encoding-type")
        if encoding not in SPARSE_ENCODINGS:
            raise ModalityError("unsupported_encoding", "the .h5ad matrix is stored in an unsupported encoding")
        if encoding == "csc_matrix":
            return InMemoryRows.sparse(element, budget_mb)
        return CsrRows(element, budget_mb)

    def _first_rows(self, rows: int) -> np.ndarray:
        """The leading rows, for detecting the kind of values (stored values only for sparse matrices: implicit
        zeros never decide the kind)."""
        return self._on_disk.block(0, min(rows, self.n_obs)) if self.n_obs else np.zeros((0, self.n_genes))

    def _opened(self) -> RowSource:
        """Small matrices read into memory once (CSC turned into CSR for row access); large ones stay on disk.

        Deferred to the first row read, so a matrix only inspected (``X`` when ``.raw`` is used) is never read whole.
        """
        if self._rows is None:
            element = self._element
            if isinstance(element, h5py.Dataset):
                stored_bytes = element.nbytes
            else:
                stored_bytes = sum(element[part].nbytes for part in ("data", "indices", "indptr"))
            if isinstance(self._on_disk, InMemoryRows) or stored_bytes > min(
                FULL_READ_BYTES, self._budget_mb * MEGABYTE
            ):
                self._rows = self._on_disk
            elif isinstance(element, h5py.Dataset):
                self._rows = InMemoryRows.dense(element, self._budget_mb)
            else:
                self._rows = InMemoryRows.sparse(element, self._budget_mb)
        return self._rows

    def row(self, index: int) -> np.ndarray:
        """Observation ``index`` as a dense (G,) float64 vector in this matrix's gene order."""
        return self._opened().block(index, index + 1).reshape(-1)  # (G,)


# Where each named matrix and its gene names live inside an .h5ad file; any other name is a key of `layers`.
MATRIX_LOCATIONS: dict[str, tuple[str, str]] = {"X": ("X", "var"), "raw": ("raw/X", "raw/var")}


class H5adFile:
    """An open ``.h5ad`` file: observation lookup and its matrices, each read once.

    Raises:
        ModalityError: ``missing_file``, ``unreadable`` or ``external_link``.
    """

    def __init__(self, path: Path, budget_mb: float = DEFAULT_BUDGET_MB) -> None:
        require_regular_file(path, "expression .h5ad")  # a FIFO or device would block HDF5's open
        self._budget_mb = budget_mb
        with reading():
            self._handle = h5py.File(path, "r")
        try:
            with reading():
                refuse_external_links(self._handle)
                obs = self._handle.get("obs")
                if not isinstance(obs, h5py.Group) or "_index" not in obs.attrs:
                    raise ModalityError("not_anndata", "the HDF5 file has no AnnData observation table (obs)")
                index = obs[obs.attrs["_index"]]
                if not isinstance(index, h5py.Dataset) or index.ndim != 1:
                    raise ModalityError("unsupported_encoding", "the .h5ad index of observation names is not 1-D")
                self.n_obs = int(index.shape[0])
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
                matrix = ExpressionMatrix(self._handle[location], self._handle[var_location], self._budget_mb)
            if matrix.n_obs != self.n_obs:
                raise ModalityError(SHAPE_MISMATCH, "the .h5ad matrix has a different number of rows than observations")
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
                names = read_names(self._handle["obs"], self._budget_mb)
            rows: dict[str, int] = {}
            for index, name in enumerate(names):
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


# (absolute path, budget) -> (the file's identity when opened, the open file). A file replaced or rewritten under the
# same name has another identity and is reopened: never read through a handle to the old file.
_OPEN_FILES: OrderedDict[tuple[str, float], tuple[tuple[int, ...], H5adFile]] = OrderedDict()
_OPEN_FILES_PID = os.getpid()


def file_identity(info: os.stat_result) -> tuple[int, ...]:
    """(size, mtime, ctime, inode, device): changes when the file is replaced or written, even with mtime set back."""
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


def open_h5ad(path: str | os.PathLike, budget_mb: float = DEFAULT_BUDGET_MB) -> H5adFile:
    """The cached open file for ``path`` in this process (DataLoader workers reopen: h5py handles do not survive fork).

    The cache is keyed by path and checked against the file's identity on every use, as the slide reader does.

    Raises:
        ModalityError: ``missing_file``, ``not_regular_file``, ``unreadable``, ``not_anndata`` or ``external_link``.
    """
    global _OPEN_FILES_PID
    if os.getpid() != _OPEN_FILES_PID:  # a forked worker: the parent's handles are not safe to use here
        _OPEN_FILES.clear()
        _OPEN_FILES_PID = os.getpid()
    absolute = str(Path(path).expanduser().absolute())
    key = (absolute, float(budget_mb))
    identity = file_identity(require_regular_file(absolute, "expression .h5ad"))
    if key in _OPEN_FILES:
        known, opened = _OPEN_FILES[key]
        if known == identity:
            _OPEN_FILES.move_to_end(key)
            return opened
        del _OPEN_FILES[key]  # replaced or rewritten since it was opened
        opened.close()
    opened = H5adFile(Path(absolute), budget_mb)
    _OPEN_FILES[key] = (identity, opened)
    while len(_OPEN_FILES) > MAX_OPEN_FILES:
        _, (_, oldest) = _OPEN_FILES.popitem(last=False)
        oldest.close()
    return opened


def expression_refs(h5ad_path: str | os.PathLike) -> list[str]:
    """One manifest cell per observation of a file, ``"<path>#row=<i>"``.

    Row references are preferred over obs names in manifests because obs names (cell barcodes, sample names) can be
    identifiers.
    """
    opened = open_h5ad(h5ad_path)
    return [f"{h5ad_path}#row={index}" for index in range(opened.n_obs)]
