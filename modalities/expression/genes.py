"""The per-process gene-list cache: one entry per distinct gene list, keyed by a content hash.

A loaded expression sample is a vector in the gene order of its source file. Copying that file's gene names into every
sample would multiply memory by the number of cells, so a sample carries only ``genes_key`` (a hash of the ordered
gene names) and the names live here, registered once per process when a file is opened or synthetic data is made.
The key depends on the names alone, so files sharing a gene panel share one entry and one alignment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_GENE_LISTS: dict[str, tuple[str, ...]] = {}


def genes_key_of(genes: Sequence[str]) -> str:
    """A short, stable id of an ordered gene list (sha256 of the names joined by newlines)."""
    digest = hashlib.sha256("\n".join(genes).encode("utf-8")).hexdigest()
    return f"genes-{digest[:16]}"


def register_gene_list(genes: Sequence[str]) -> str:
    """Remember ``genes`` in this process and return its key; registering the same list twice is a no-op."""
    names = tuple(str(gene) for gene in genes)
    key = genes_key_of(names)
    _GENE_LISTS.setdefault(key, names)
    return key


def gene_list(genes_key: str) -> tuple[str, ...]:
    """The ordered gene names registered under ``genes_key``.

    Raises:
        LookupError: when this process never loaded a file (or made synthetic data) with that gene list; samples must be
            loaded in the process that aligns them, because the names are not copied into each sample.
    """
    try:
        return _GENE_LISTS[genes_key]
    except KeyError:
        raise LookupError(
            f"gene list {genes_key!r} is not registered in this process: load the sample with "
            "ExpressionModality.load (or make it with synthetic) in the same process before aligning it"
        ) from None
