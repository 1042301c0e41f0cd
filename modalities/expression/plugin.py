"""``ExpressionModality``: single-cell and spatial gene expression from AnnData ``.h5ad`` files.

A manifest cell names one observation: ``sample.h5ad#row=12`` (preferred; see ``expression_refs``), ``sample.h5ad#<obs
name>``, or ``spot.h5ad`` for a one-observation file. Loading normalises the cell (``normalize.py``) in its file's gene
order; the training data's gene vocabulary (``vocabulary.py``) is fitted once and every cell is aligned onto it by
gene name in ``transforms``; ``encoders.py`` holds the MLP and the gene transformer.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from medclip.data.loader import sample_generator
from medclip.types import Modality, ModalityError, Sample

from .config import ExpressionConfig
from .encoders import build_expression_encoder
from .genes import genes_key_of
from .normalize import AUTO, EXPRESSION_NORMALIZATIONS, LOG_SPACE, SCALED_SPACE, check_normalised
from .reader import CellReference, choose_matrix, open_h5ad, parse_reference, reading
from .synthetic import synthetic_samples
from .vocabulary import GeneAligner, GeneStatistics, GeneVocabulary

STATE_FORMAT = "medclip.expression/1"
VALUE_SPACES = (LOG_SPACE, SCALED_SPACE)


def check_value_space(meta: Mapping[str, Any], space: str | None) -> None:
    """Refuse a cell whose values live in another space than the model's (log-normalised vs z-scored).

    Raises:
        ModalityError: ``normalization_mismatch``.
    """
    if space is not None and meta.get("space") != space:
        raise ModalityError(
            "normalization_mismatch",
            f"the model was fitted on {space!r} expression values but this input is {meta.get('space')!r} "
            f"(normalization {meta.get('normalization')!r}); set the expression layer/normalization to match training",
        )


class AlignExpression:
    """The expression transform: align a loaded cell onto the vocabulary, optionally drop genes when training.

    A class rather than a closure so DataLoader workers can pickle it.

    Args:
        name: the modality's sample key.
        aligner: the fitted gene aligner (shared with the modality, so its alignment report sees this process's files).
        space: the value space the model was fitted on.
        gene_dropout: fraction of expressed genes zeroed per cell (0 at evaluation), drawn from the sample's own
            generator (``medclip.data.loader.sample_generator``).
    """

    def __init__(self, name: str, aligner: GeneAligner, space: str | None, gene_dropout: float = 0.0) -> None:
        self.name = name
        self.aligner = aligner
        self.space = space
        self.gene_dropout = gene_dropout

    def __call__(self, sample: Sample) -> Sample:
        if self.name not in sample:
            return sample
        meta = sample.get(f"{self.name}_meta")
        if not isinstance(meta, Mapping) or "genes_key" not in meta:
            raise ValueError(f"an {self.name!r} sample needs {self.name}_meta with a genes_key: load it with load()")
        check_value_space(meta, self.space)
        aligned = torch.from_numpy(self.aligner.align(np.asarray(sample[self.name]), meta["genes_key"]))  # (V,)
        if self.gene_dropout > 0:
            kept = torch.rand(aligned.shape, generator=sample_generator()) >= self.gene_dropout  # (V,)
            aligned = aligned * kept  # (V,)
        return {**sample, self.name: aligned}


class ExpressionModality(Modality):
    """Single-cell / spatial gene expression (see the module docstring)."""

    name = "expression"
    config_class = ExpressionConfig
    fits_on_data = True
    files_hold_many_patients = True  # one .h5ad holds the cells of many donors: rows name their part
    file_suffixes = (".h5ad",)

    def __init__(self, config: ExpressionConfig | None = None) -> None:
        super().__init__(config)
        self.config: ExpressionConfig
        self.vocabulary: GeneVocabulary | None = None
        self.space: str | None = None  # value space of the training data, set by fit
        self.source_kinds: dict[str, int] = {}  # how many training cells came as counts / log1p / scaled
        self._aligner: GeneAligner | None = None

    # --- manifest cell -> reference -> sample ------------------------------------------------------------------------
    def resolve(self, value: str, root: str | os.PathLike) -> Mapping[str, Any]:
        """``"a.h5ad#row=3"`` -> {"path": root/a.h5ad, "row": 3}; ``#<name>`` gives "obs"; a bare path neither."""
        reference = parse_reference(value, root)
        resolved: dict[str, Any] = {"path": str(reference.path)}
        if reference.row is not None:
            resolved["row"] = reference.row
        if reference.obs is not None:
            resolved["obs"] = reference.obs
        return resolved

    def load(self, ref: str | os.PathLike | Mapping[str, Any]) -> Sample:
        """One observation, normalised, as a (G,) float32 vector in its file's gene order.

        Raises:
            ModalityError: missing_file, not_regular_file, unreadable, not_anndata, unsupported_encoding,
                external_link, missing_layer, missing_observation, duplicate_observation, duplicate_genes,
                shape_mismatch, corrupt_sparse, complex_values, unsupported_dtype, too_large, non_finite,
                implausible_values, normalization_mismatch, empty_observation, bad_reference.
        """
        reference = self._reference(ref)
        opened = open_h5ad(reference.path, self.config.max_decoded_mb)
        matrix = choose_matrix(opened, self.config.layer)
        row = opened.row_of(reference)
        with reading():
            values = matrix.row(row)  # (G,)
        if not np.isfinite(values).all():
            raise ModalityError("non_finite", "the observation has non-finite (NaN or infinite) expression values")
        kind = matrix.detected_kind if self.config.normalization == AUTO else self.config.normalization
        normalization = EXPRESSION_NORMALIZATIONS.get(kind)
        if normalization.non_negative and values.min(initial=0.0) < 0:
            raise ModalityError(
                "normalization_mismatch",
                f"normalization {kind!r} expects non-negative values but the observation has negative ones "
                "(z-scored data): use normalization 'scaled' or a layer holding counts",
            )
        if normalization.non_negative and not values.any():
            raise ModalityError("empty_observation", "the observation has no expression (every value is zero)")
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow becomes inf, refused by the check below
            normalised = normalization.apply(values, self.config.target_sum)  # (G,) float64
        check_normalised(normalised, normalization)  # after the conversion, never only before
        normalised = normalised.astype(np.float32)
        meta = {
            "genes_key": matrix.genes_key,
            "normalization": normalization.name,
            "space": normalization.space,
            "n_genes": int(normalised.size),
        }
        return {self.name: normalised, f"{self.name}_meta": meta}

    @staticmethod
    def _reference(ref: str | os.PathLike | Mapping[str, Any]) -> CellReference:
        if not isinstance(ref, Mapping):
            return parse_reference(os.fspath(ref))
        unknown = set(ref) - {"path", "obs", "row"}
        if "path" not in ref or unknown or ("obs" in ref and "row" in ref):
            raise ModalityError(
                "bad_reference", "an expression reference mapping needs 'path' and at most one of 'obs' or 'row'"
            )
        row = ref.get("row")
        if row is not None and (isinstance(row, bool) or not isinstance(row, int | np.integer)):
            raise ModalityError("bad_reference", "an expression reference's 'row' must be an integer")
        obs = ref.get("obs")
        return CellReference(
            path=parse_reference(os.fspath(ref["path"])).path,
            obs=None if obs is None else str(obs),
            row=None if row is None else int(row),
        )

    # --- fitting and its saved state ------------------------------------------------------------------------------
    def fit(self, samples: Iterable[Sample]) -> None:
        """Learn the gene vocabulary and value space from loaded training samples (those without expression skip).

        Raises:
            ModalityError: ``mixed_normalization`` when training files give different value spaces (log-normalised
                and z-scored cells cannot share an input scale).
            ValueError: when no sample has expression.
        """
        cfg = self.config
        statistics = GeneStatistics()
        kinds: Counter[str] = Counter()
        spaces: Counter[str] = Counter()
        for sample in samples:
            if self.name not in sample:
                continue
            meta = sample[f"{self.name}_meta"]
            statistics.add(np.asarray(sample[self.name]), meta["genes_key"])
            kinds[meta["normalization"]] += 1
            spaces[meta["space"]] += 1
        if len(spaces) > 1:
            raise ModalityError(
                "mixed_normalization",
                f"training expression mixes value spaces ({dict(spaces)} cells); set layer/normalization so every "
                "file gives the same",
            )
        self._set_vocabulary(statistics.vocabulary(cfg.max_genes), space=next(iter(spaces)))
        self.source_kinds = dict(kinds)
        for genes_key in statistics.gene_lists():
            self._aligner.alignment(genes_key)  # computed (and logged) once per training gene list

    def _set_vocabulary(self, vocabulary: GeneVocabulary, space: str) -> None:
        self.vocabulary = vocabulary
        self.space = space
        self._aligner = GeneAligner(vocabulary)

    def preprocess_state(self) -> dict[str, Any]:
        """The config, gene vocabulary and normalisation fingerprint (JSON-serialisable)."""
        genes = list(self.vocabulary.genes) if self.vocabulary is not None else None
        return {
            "format": STATE_FORMAT,
            "config": asdict(self.config),
            "vocabulary": genes,
            "vocabulary_key": genes_key_of(genes) if genes is not None else None,
            "normalization": {
                "mode": self.config.normalization,
                "layer": self.config.layer,
                "target_sum": self.config.target_sum,
                "space": self.space,
                "source_kinds": dict(self.source_kinds),
            },
        }

    def load_preprocess_state(self, state: Mapping[str, Any]) -> None:
        """Restore the vocabulary and value space saved by ``preprocess_state`` (the caller restores the config).

        Raises:
            ValueError: when the state is not this plugin's or is inconsistent.
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"expression preprocess state has format {state.get('format')!r}, expected {STATE_FORMAT}")
        genes = state.get("vocabulary")
        if genes is None:
            self.vocabulary, self.space, self._aligner, self.source_kinds = None, None, None, {}
            return
        if not isinstance(genes, list) or not all(isinstance(gene, str) for gene in genes):
            raise ValueError("expression preprocess state: vocabulary must be a list of gene names")
        if state.get("vocabulary_key") != genes_key_of(genes):
            raise ValueError("expression preprocess state: vocabulary does not match its saved fingerprint")
        normalization = state.get("normalization") or {}
        if normalization.get("space") not in VALUE_SPACES:
            raise ValueError(f"expression preprocess state: unknown value space {normalization.get('space')!r}")
        self._set_vocabulary(GeneVocabulary(genes), space=normalization["space"])
        self.source_kinds = {str(kind): int(count) for kind, count in normalization.get("source_kinds", {}).items()}

    def check_compatible(self, sample_meta: Mapping[str, Any]) -> None:
        """Refuse inputs in another value space than the training data (``normalization_mismatch``)."""
        check_value_space(sample_meta, self.space)

    def alignment_report(self) -> dict[str, dict[str, int]]:
        """Per gene list aligned in this process (training lists included): source_genes, matched, missing, unknown."""
        return self._aligner.report() if self._aligner is not None else {}

    # --- tensors -------------------------------------------------------------------------------------------------
    def _fitted_aligner(self) -> GeneAligner:
        if self._aligner is None:
            raise RuntimeError(
                "the expression modality has no gene vocabulary yet: call fit(training samples, cfg) or "
                "load_preprocess_state(saved state) first"
            )
        return self._aligner

    def transforms(self, train: bool) -> Callable[[Sample], Sample]:
        """Align onto the vocabulary by gene name -> {"expression": (V,) float32 tensor}; gene dropout if training."""
        cfg = self.config
        return AlignExpression(self.name, self._fitted_aligner(), self.space, cfg.gene_dropout if train else 0.0)

    def collate(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Stack transformed cells: {"expression": (B, V) float32, "expression_mask": (B,) bool}; missing rows zero."""
        present = torch.tensor([sample.get(self.name) is not None for sample in samples], dtype=torch.bool)  # (B,)
        vectors = [torch.as_tensor(sample[self.name], dtype=torch.float32) for sample in samples if self.name in sample]
        if vectors:
            size = vectors[0].shape[-1]
        elif self.vocabulary is not None:
            size = len(self.vocabulary)
        else:
            raise RuntimeError("cannot collate a batch without expression before the vocabulary is fitted")
        batch = torch.zeros(len(samples), size)  # (B, V)
        for row, vector in zip(torch.nonzero(present).flatten().tolist(), vectors, strict=True):
            if vector.shape != (size,):
                raise ValueError(
                    f"expression vectors must be aligned to the vocabulary before collate: got shape "
                    f"{tuple(vector.shape)}, expected ({size},); apply transforms() first"
                )
            batch[row] = vector
        return {self.name: batch, f"{self.name}_mask": present}

    def build_encoder(self) -> nn.Module:
        """The ``cfg.encoder`` encoder over the fitted vocabulary: (B, V) -> EncoderOutput(pooled (B, width), ...)."""
        cfg = self.config
        if self.vocabulary is None:
            self._fitted_aligner()  # raises the explanation
        return build_expression_encoder(len(self.vocabulary), cfg)

    def synthetic(self, n: int, seed: int = 0) -> list[Sample]:
        """``n`` negative-binomial cells from a few cell-type programs, normalised as counts files are."""
        return synthetic_samples(n, seed, target_sum=self.config.target_sum)
