"""A manifest opened for evaluating a model: its rows split exactly as the model's pretraining split them.

Evaluation must score the patients pretraining held out, so the split settings come from the checkpoint's model card
(``training.split``), never from defaults. The datasets use the model's own plugins and evaluation transforms.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..config import ConfigError
from ..data import Manifest, ManifestDataset, read_manifest
from ..data.manifest import SPLITS

ALL_ROWS = "all"  # the `split` value that selects every row of the manifest


def check_split_name(name: str, key: str = "split") -> str | None:
    """ "train" / "val" / "test" -> itself, "all" -> None (every row); anything else is a config error."""
    if name == ALL_ROWS:
        return None
    if name not in SPLITS:
        raise ConfigError(f"{key} must be one of {', '.join(SPLITS)} or {ALL_ROWS!r}, got {name!r}")
    return name


def require_modalities(model: torch.nn.Module, *modalities: str) -> None:
    """Fail early, naming what the model has, when a config names a modality the model never learned."""
    known = model.preprocess.modalities
    missing = [name for name in modalities if name not in known]
    if missing:
        raise ConfigError(f"the checkpoint has no encoder for {missing}; it embeds {sorted(known)}")


@dataclass
class EvaluationData:
    """A pseudonymised manifest and its row -> split assignment (pretraining's)."""

    manifest: Manifest
    splits: dict[int, str]

    def patients(self, *split_names: str | None) -> set[str]:
        """Patient pseudonyms of the rows in any of ``split_names`` (None = every row): checked before embedding."""
        return {
            row.patient
            for row in self.manifest.rows
            if None in split_names or self.splits.get(row.row_number) in split_names
        }

    def dataset(self, model: torch.nn.Module, modalities: Sequence[str], split: str | None) -> ManifestDataset:
        """The rows of ``split`` (None = all) with the model's evaluation transforms for ``modalities``."""
        preprocess = model.preprocess
        plugins = {name: preprocess.modalities[name] for name in modalities}
        transforms = {name: preprocess.transforms[name] for name in modalities}
        return ManifestDataset(self.manifest, plugins, split=split, transforms=transforms, splits=self.splits)

    def label_columns(self, findings: Sequence[str]) -> list[int]:
        """Column indices of ``findings`` in ``manifest.label_names``; a missing one is an error naming the closest."""
        names = list(self.manifest.label_names)
        indices = []
        for finding in findings:
            if finding not in names:
                close = difflib.get_close_matches(finding, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"the manifest has no column 'label:{finding}'{hint} Findings in the manifest: "
                    f"{', '.join(names) or 'none'}"
                )
            indices.append(names.index(finding))
        return indices


def open_evaluation_data(
    model: torch.nn.Module, manifest: str | os.PathLike, modalities: Sequence[str], root: str = ""
) -> EvaluationData:
    """Read ``manifest`` for ``modalities`` and split it by patient with the model card's split settings."""
    if not str(manifest):
        raise ConfigError("manifest is empty: point it at the CSV or Parquet manifest to evaluate")
    require_modalities(model, *modalities)
    normalize = bool(model.card.training.get("normalize_patient_ids", False))  # as pretraining read its ids
    table = read_manifest(manifest, list(dict.fromkeys(modalities)), root=root or None, normalize_patient_ids=normalize)
    return EvaluationData(table, model.card.split_config().assign(table))
