"""The gene vocabulary learned from training data, and aligning any file's genes onto it by name.

Files disagree on gene panels and gene order (different chemistries, spatial panels, filtered genes), so the model's
input is defined by an ordered list of gene names fitted once on the training data and saved in the checkpoint.
Every cell is then mapped onto that list by name: vocabulary genes the file lacks become zeros, file genes outside the
vocabulary are dropped, and both counts are logged once per distinct gene list so nothing is lost silently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medclip.types import ModalityError

from .genes import gene_list

logger = logging.getLogger(__name__)


class GeneVocabulary:
    """An ordered list of unique gene names: position i is input feature i of the encoder."""

    def __init__(self, genes: Sequence[str]) -> None:
        self.genes = tuple(str(gene) for gene in genes)
        self.index = {gene: position for position, gene in enumerate(self.genes)}
        if len(self.index) != len(self.genes):
            raise ValueError("a gene vocabulary must not repeat gene names")
        if not self.genes:
            raise ValueError("a gene vocabulary needs at least one gene")

    def __len__(self) -> int:
        return len(self.genes)


class GeneStatistics:
    """Streams training cells and chooses the vocabulary: the union of their genes, optionally the most variable.

    Sums are kept per distinct gene list (not per gene name), so fitting costs one vector add per cell; genes a cell's
    file lacks count as zeros, exactly as alignment will fill them.
    """

    def __init__(self) -> None:
        self._sums: dict[str, np.ndarray] = {}
        self._squares: dict[str, np.ndarray] = {}
        self.cells = 0

    def add(self, values: np.ndarray, genes_key: str) -> None:
        values = np.asarray(values, dtype=np.float64)
        if genes_key not in self._sums:
            self._sums[genes_key] = np.zeros_like(values)
            self._squares[genes_key] = np.zeros_like(values)
        self._sums[genes_key] += values
        self._squares[genes_key] += values * values
        self.cells += 1

    def gene_lists(self) -> list[str]:
        """Keys of the distinct gene lists seen, in first-seen order."""
        return list(self._sums)

    def vocabulary(self, max_genes: int = 0) -> GeneVocabulary:
        """Every gene seen (first-seen order), or with ``max_genes`` the N of highest variance (ties: mean)."""
        if not self.cells:
            raise ValueError("fitting the expression vocabulary needs at least one training sample with expression")
        positions: dict[str, int] = {}
        for key in self._sums:
            for gene in gene_list(key):
                positions.setdefault(gene, len(positions))
        union = list(positions)
        if not max_genes or max_genes >= len(union):
            return GeneVocabulary(union)
        sums = np.zeros(len(union))
        squares = np.zeros(len(union))
        for key, key_sums in self._sums.items():
            targets = np.fromiter((positions[gene] for gene in gene_list(key)), dtype=np.int64)
            np.add.at(sums, targets, key_sums)
            np.add.at(squares, targets, self._squares[key])
        mean = sums / self.cells
        variance = squares / self.cells - mean * mean
        ranked = np.lexsort((np.arange(len(union)), -mean, -variance))  # primary key last: variance, mean, position
        keep = np.sort(ranked[:max_genes])
        return GeneVocabulary([union[position] for position in keep])


@dataclass(frozen=True)
class Alignment:
    """Where a source gene list's values go in the vocabulary, and what did not fit.

    Attributes:
        source_index: (M,) positions in the source vector of the genes the vocabulary knows.
        target_index: (M,) their positions in the vocabulary.
        source_genes: genes in the source list.
        missing: vocabulary genes the source lacks (zero-filled).
        unknown: source genes outside the vocabulary (dropped).
    """

    source_index: np.ndarray
    target_index: np.ndarray
    source_genes: int
    missing: int
    unknown: int

    def report(self) -> dict[str, int]:
        matched = int(self.source_index.size)
        return {"source_genes": self.source_genes, "matched": matched, "missing": self.missing, "unknown": self.unknown}


class GeneAligner:
    """Maps vectors in any registered gene order onto a vocabulary, computing each gene list's alignment once."""

    def __init__(self, vocabulary: GeneVocabulary) -> None:
        self.vocabulary = vocabulary
        self._alignments: dict[str, Alignment] = {}

    def alignment(self, genes_key: str) -> Alignment:
        """The alignment of the gene list ``genes_key``; the first time, its counts are logged.

        Raises:
            ModalityError: ``no_shared_genes`` when the list shares no gene with the vocabulary (the cell would be all
                zeros, which is never what a user means).
        """
        if genes_key not in self._alignments:
            alignment = self._compute(gene_list(genes_key))
            self._alignments[genes_key] = alignment
            level = logging.WARNING if alignment.missing > len(self.vocabulary) // 2 else logging.INFO
            logger.log(
                level,
                "expression gene list %s: %d of %d vocabulary genes matched, %d missing (zero-filled), "
                "%d unknown (dropped)",
                genes_key,
                int(alignment.source_index.size),
                len(self.vocabulary),
                alignment.missing,
                alignment.unknown,
            )
        return self._alignments[genes_key]

    def _compute(self, genes: Sequence[str]) -> Alignment:
        """Index pairs of the genes shared by ``genes`` and the vocabulary, so aligning a cell is one gather."""
        index = self.vocabulary.index
        source_index = np.asarray([source for source, gene in enumerate(genes) if gene in index], dtype=np.int64)
        if not source_index.size:
            raise ModalityError("no_shared_genes", "none of the file's gene names is in the model's vocabulary")
        target_index = np.asarray([index[genes[source]] for source in source_index], dtype=np.int64)
        return Alignment(
            source_index=source_index,
            target_index=target_index,
            source_genes=len(genes),
            missing=int(len(self.vocabulary) - source_index.size),
            unknown=int(len(genes) - source_index.size),
        )

    def align(self, values: np.ndarray, genes_key: str) -> np.ndarray:
        """(G,) values in the source gene order -> (V,) float32 values in vocabulary order."""
        alignment = self.alignment(genes_key)
        if values.shape != (alignment.source_genes,):
            raise ModalityError(
                "shape_mismatch",
                f"expression vector has shape {tuple(values.shape)} but its gene list has {alignment.source_genes}",
            )
        aligned = np.zeros(len(self.vocabulary), dtype=np.float32)  # (V,)
        aligned[alignment.target_index] = values[alignment.source_index]
        return aligned

    def report(self) -> dict[str, dict[str, int]]:
        """Counts per gene list aligned in this process: source genes, matched, missing, unknown."""
        return {key: alignment.report() for key, alignment in self._alignments.items()}
