"""Search indexes over study embeddings: exact (torch) for small sets, FAISS for large archives; saved and reloaded.

An index holds unit-norm vectors and, per vector, the study and patient *pseudonyms* it came from (never a raw
identifier or a path), so a saved index can be shared with the team that runs searches. Cosine similarity is the inner
product of unit vectors, so every kind ranks the same way; "exact" and "faiss" are both exhaustive and return the same
top-k, "faiss_ivf" trades exactness for speed on archives of millions of studies (``nprobe`` = ``nlist`` makes it
exhaustive again).

Files: ``index.json`` (kind, width, ids, metadata such as the checkpoint hash) plus ``vectors.safetensors`` (exact)
or ``index.faiss`` (FAISS's own binary format). Neither is a pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..registry import Registry, lazy_import

INDEX_FILE = "index.json"


@dataclass
class SearchHit:
    """One result of a search: where the study lies in the index, and who it is (pseudonyms only)."""

    position: int
    study: str
    patient: str
    score: float


def _unit_rows(vectors: Any) -> np.ndarray:
    array = np.asarray(torch.as_tensor(vectors, dtype=torch.float32).cpu())
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, D) array of vectors, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("vectors hold NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)  # (N, D)


@dataclass
class EmbeddingIndex:
    """Base of every index kind: the ids and metadata; subclasses hold the vectors and search them.

    Attributes:
        studies: (N,) study pseudonyms, in index order.
        patients: (N,) patient pseudonyms, in index order.
        metadata: JSON-able provenance saved with the index (checkpoint hash, modality, manifest hash).
        options: the kind's own settings (e.g. ``nlist`` / ``nprobe`` for "faiss_ivf").
    """

    kind: ClassVar[str] = ""
    studies: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    dim: int = 0

    # --- to implement -----------------------------------------------------------------------------------------
    def _add(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _save_vectors(self, folder: Path) -> None:
        raise NotImplementedError

    def _load_vectors(self, folder: Path) -> None:
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.studies)

    def add(self, vectors: Any, studies: Sequence[str], patients: Sequence[str]) -> EmbeddingIndex:
        """Add (N, D) vectors with their study and patient pseudonyms; returns the index."""
        vectors = _unit_rows(vectors)
        if not len(studies) == len(patients) == len(vectors):
            raise ValueError(
                f"{len(vectors)} vectors need as many studies and patients, got {len(studies)}, {len(patients)}"
            )
        if self.dim and vectors.shape[1] != self.dim:
            raise ValueError(f"this index holds {self.dim}-wide vectors, got {vectors.shape[1]}")
        self.dim = vectors.shape[1]
        self._add(vectors)
        self.studies.extend(map(str, studies))
        self.patients.extend(map(str, patients))
        return self

    def search(self, queries: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` targets of each query, most similar first.

        Args:
            queries: (Q, D) embeddings (normalised here).
            k: how many results per query; capped at the index size.

        Returns:
            ``(scores (Q, k) cosine similarities, positions (Q, k) int64 rows of the index)``.
        """
        if len(self) == 0:
            raise ValueError("the index is empty: add vectors before searching")
        queries = _unit_rows(queries)
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries are {queries.shape[1]} wide but the index holds {self.dim}-wide vectors")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores, positions = self._search(queries, min(k, len(self)))
        return np.asarray(scores, dtype=np.float32), np.asarray(positions, dtype=np.int64)

    def hits(self, query: Any, k: int = 10) -> list[SearchHit]:
        """Top ``k`` hits of one (D,) or (1, D) query as ``SearchHit`` records."""
        scores, positions = self.search(torch.as_tensor(query).reshape(1, -1), k)
        return [
            SearchHit(int(p), self.studies[p], self.patients[p], float(s))
            for s, p in zip(scores[0], positions[0], strict=True)
        ]

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index into ``folder`` (created); ``load_index(folder)`` reads it back."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_vectors(folder)
        description = {
            "kind": self.kind,
            "dim": self.dim,
            "count": len(self),
            "options": self.options,
            "metadata": self.metadata,
            "studies": self.studies,
            "patients": self.patients,
        }
        temporary = folder / f".{INDEX_FILE}.tmp"
        temporary.write_text(json.dumps(description))
        os.replace(temporary, folder / INDEX_FILE)  # the description last: a folder with it is complete
        return folder


INDEXES: Registry[type[EmbeddingIndex]] = Registry("retrieval index")


@INDEXES.register("exact")
@dataclass
class ExactIndex(EmbeddingIndex):
    """Exhaustive search by a matrix product in torch, chunked over queries; right up to ~1e6 vectors on a GPU."""

    kind: ClassVar[str] = "exact"
    chunk_size: ClassVar[int] = 1024
    _vectors: torch.Tensor | None = None

    def _add(self, vectors: np.ndarray) -> None:
        new = torch.from_numpy(vectors)
        self._vectors = new if self._vectors is None else torch.cat([self._vectors, new])

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, positions = [], []
        for start in range(0, len(queries), self.chunk_size):
            similarity = torch.from_numpy(queries[start : start + self.chunk_size]) @ self._vectors.T  # (chunk, N)
            # a stable sort: equal scores keep index order, so results are reproducible
            order = similarity.argsort(dim=1, descending=True, stable=True)[:, :k]  # (chunk, k)
            scores.append(similarity.gather(1, order))
            positions.append(order)
        return torch.cat(scores).numpy(), torch.cat(positions).numpy()

    def _save_vectors(self, folder: Path) -> None:
        save_file({"vectors": self._vectors.contiguous()}, str(folder / "vectors.safetensors"))

    def _load_vectors(self, folder: Path) -> None:
        self._vectors = load_file(str(folder / "vectors.safetensors"))["vectors"]


def _faiss():
    return lazy_import("faiss", "the FAISS retrieval index", "faiss-cpu")


@INDEXES.register("faiss")
@dataclass
class FaissIndex(EmbeddingIndex):
    """FAISS ``IndexFlatIP``: exhaustive inner-product search, multi-threaded and SIMD; same top-k as "exact"."""

    kind: ClassVar[str] = "faiss"
    _index: Any = None

    def _build(self, dim: int) -> Any:
        return _faiss().IndexFlatIP(dim)

    def _add(self, vectors: np.ndarray) -> None:
        if self._index is None:
            self._index = self._build(vectors.shape[1])
        if not self._index.is_trained:
            self._index.train(vectors)
        self._index.add(vectors)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._index.search(queries, k)

    def _save_vectors(self, folder: Path) -> None:
        _faiss().write_index(self._index, str(folder / "index.faiss"))

    def _load_vectors(self, folder: Path) -> None:
        self._index = _faiss().read_index(str(folder / "index.faiss"))


@INDEXES.register("faiss_ivf")
@dataclass
class FaissIVFIndex(FaissIndex):
    """FAISS ``IndexIVFFlat``: clusters the archive into ``nlist`` cells and searches ``nprobe`` of them.

    Approximate (a true neighbour in an unvisited cell is missed) but sub-linear, for archives of millions of
    studies. Options: ``nlist`` (default ~sqrt(N) at build time, at most N), ``nprobe`` (default 8).
    """

    kind: ClassVar[str] = "faiss_ivf"

    def _build(self, dim: int) -> Any:
        faiss = _faiss()
        nlist = int(self.options.get("nlist", 0))
        if nlist < 1:
            raise ValueError("faiss_ivf needs options.nlist >= 1 (the number of clusters), e.g. sqrt of the archive")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = int(self.options.get("nprobe", 8))
        return index

    def _add(self, vectors: np.ndarray) -> None:
        if self._index is None and int(self.options.get("nlist", 0)) > len(vectors):
            raise ValueError(f"faiss_ivf: nlist={self.options['nlist']} clusters need at least as many vectors")
        super()._add(vectors)

    def _load_vectors(self, folder: Path) -> None:
        super()._load_vectors(folder)
        self._index.nprobe = int(self.options.get("nprobe", 8))


def build_index(
    kind: str,
    vectors: Any,
    studies: Sequence[str],
    patients: Sequence[str],
    metadata: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> EmbeddingIndex:
    """An index of ``kind`` ("exact", "faiss", "faiss_ivf") over (N, D) vectors with their pseudonyms."""
    cls = INDEXES.get(kind)
    options = dict(options or {})
    if kind == "faiss_ivf" and "nlist" not in options:
        options["nlist"] = max(1, int(np.sqrt(len(studies))))  # FAISS's rule of thumb: ~sqrt(N) clusters
    index = cls(metadata=dict(metadata or {}), options=options)
    return index.add(vectors, studies, patients)


def load_index(folder: str | os.PathLike) -> EmbeddingIndex:
    """Read an index written by ``EmbeddingIndex.save``; the kind comes from ``index.json``."""
    folder = Path(folder)
    description_path = folder / INDEX_FILE
    if not description_path.is_file():
        raise FileNotFoundError(f"{folder} holds no {INDEX_FILE}: not a saved medclip index")
    description = json.loads(description_path.read_text())
    cls = INDEXES.get(description["kind"])
    index = cls(
        studies=list(description["studies"]),
        patients=list(description["patients"]),
        metadata=dict(description.get("metadata", {})),
        options=dict(description.get("options", {})),
        dim=int(description["dim"]),
    )
    index._load_vectors(folder)
    if len(index.studies) != int(description["count"]):
        raise ValueError(f"{folder}: {INDEX_FILE} lists {len(index.studies)} studies but claims {description['count']}")
    return index
