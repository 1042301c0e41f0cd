"""What the clinical recipes (zero-shot, retrieve, probe, embed) share: model + manifest in, embeddings out.

Each recipe opens a checkpoint with the preprocessing it was trained with, reads the manifest under the
institution's pseudonym key, splits it by patient exactly as pretraining did (the checkpoint's own fractions and
seed, so ``split: test`` means the patients pretraining held out), and embeds the rows of one split. Rows that cannot
be read are skipped and counted, never silently dropped; the counts go into every metric file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Subset
from tqdm.auto import tqdm

import medclip
from medclip.config import ConfigError
from medclip.data import Manifest, ManifestDataset, SkipSummary, assign_splits, is_empty_batch, read_manifest
from medclip.data.loader import make_loader
from medclip.data.manifest import SPLITS
from medclip.eval.hygiene import provenance_record
from medclip.experiment import ExperimentConfig
from medclip.inference import Preprocess, move_to_device
from medclip.train.checkpoint import read_config

log = logging.getLogger("medclip.recipes")

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
ALL_ROWS = "all"  # the `split` value that selects every row of the manifest


def resolve_device(name: str) -> str:
    """ "auto" -> the first GPU when there is one, else the CPU; anything else is passed to torch as is."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


@dataclass
class OpenedModel:
    """A checkpoint opened for inference."""

    model: torch.nn.Module
    preprocess: Preprocess
    experiment: ExperimentConfig
    checkpoint: Path
    device: str

    def require(self, *modalities: str) -> None:
        """Fail early, naming what the checkpoint has, when a config names a modality the model never learned."""
        missing = [name for name in modalities if name not in self.preprocess.modalities]
        if missing:
            raise ConfigError(
                f"the checkpoint has no encoder for {missing}; it embeds {sorted(self.preprocess.modalities)}"
            )


def open_model(checkpoint: str | os.PathLike, device: str = "auto") -> OpenedModel:
    device = resolve_device(device)
    model, preprocess = medclip.load_model(checkpoint, device=device)
    return OpenedModel(model, preprocess, read_config(checkpoint), Path(checkpoint), device)


def open_manifest(
    path: str | os.PathLike, modalities: Sequence[str], root: str, experiment: ExperimentConfig
) -> tuple[Manifest, dict[int, str]]:
    """Read the manifest for ``modalities`` and split it by patient with the checkpoint's split settings."""
    if not str(path):
        raise ConfigError("manifest is empty: point it at the CSV or Parquet manifest to evaluate")
    manifest = read_manifest(path, list(dict.fromkeys(modalities)), root=root or None)
    data = experiment.data
    return manifest, assign_splits(manifest, data.val_fraction, data.test_fraction, data.split_seed)


class BootstrapEvalConfig(Protocol):
    """The options every patient-bootstrapped evaluation recipe (zero-shot, retrieve, probe) has."""

    checkpoint: str
    seed: int
    n_bootstrap: int
    confidence: float


def eval_provenance(
    command: str,
    cfg: BootstrapEvalConfig,
    manifest: Manifest,
    prompt_set: Mapping[str, Any] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """The provenance record of an evaluation: checkpoint, manifest, seed, ``settings`` and the patient bootstrap."""
    return provenance_record(
        command,
        cfg.checkpoint,
        manifest.manifest_hash(),
        manifest.key_fingerprint,
        cfg.seed,
        prompt_set,
        **settings,
        bootstrap={"unit": "patient", "replicates": cfg.n_bootstrap, "confidence": cfg.confidence},
    )


def check_split_name(name: str, key: str = "split") -> str | None:
    """ "train" / "val" / "test" -> itself, "all" -> None (every row); anything else is a config error."""
    if name == ALL_ROWS:
        return None
    if name not in SPLITS:
        raise ConfigError(f"{key} must be one of {', '.join(SPLITS)} or {ALL_ROWS!r}, got {name!r}")
    return name


def split_patients(manifest: Manifest, splits: dict[int, str], *names: str | None) -> set[str]:
    """Patient pseudonyms of the rows in any of the splits ``names`` (None = every row): checked before embedding."""
    return {row.patient for row in manifest.rows if None in names or splits.get(row.row_number) in names}


def label_columns(manifest: Manifest, findings: Sequence[str]) -> list[int]:
    """Column indices of ``findings`` in ``manifest.label_names``; a missing one is an error naming the closest."""
    import difflib

    indices = []
    for finding in findings:
        if finding not in manifest.label_names:
            close = difflib.get_close_matches(finding, list(manifest.label_names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"the manifest has no column 'label:{finding}'{hint} Findings in the manifest: "
                f"{', '.join(manifest.label_names) or 'none'}"
            )
        indices.append(manifest.label_names.index(finding))
    return indices


def resolve_prompt_file(name: str) -> Path:
    """A prompt-set file: a path as given, else a bundled set in ``recipes/prompts/`` (with or without .yaml)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for candidate in (PROMPTS_DIR / name, PROMPTS_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    bundled = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))) or "none"
    raise ConfigError(f"prompt set {name!r} is neither a file nor a bundled set (bundled: {bundled})")


@dataclass
class EmbeddedRows:
    """Embedded manifest rows (pseudonyms only) and, per modality, the embedding and whether the row has it.

    Attributes:
        row_numbers: (N,) 1-based manifest rows.
        patients: (N,) patient pseudonyms.
        studies: (N,) study pseudonyms.
        sites: (N,) site or None.
        labels: (N, K) 0 / 1 / NaN in ``Manifest.label_names`` order.
        embeddings: modality -> (N, D) unit vectors, zero rows where the modality is missing.
        present: modality -> (N,) bool.
    """

    row_numbers: np.ndarray
    patients: np.ndarray
    studies: np.ndarray
    sites: list[str | None]
    labels: np.ndarray
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row_numbers)

    def subset(self, keep: np.ndarray) -> EmbeddedRows:
        """The rows where ``keep`` (a (N,) bool mask or index array) selects."""
        return EmbeddedRows(
            self.row_numbers[keep],
            self.patients[keep],
            self.studies[keep],
            [self.sites[i] for i in np.arange(len(self))[keep]],
            self.labels[keep],
            {name: value[keep] for name, value in self.embeddings.items()},
            {name: value[keep] for name, value in self.present.items()},
        )

    @staticmethod
    def concatenate(parts: Sequence[EmbeddedRows], modalities: Sequence[str], n_labels: int) -> EmbeddedRows:
        if not parts:
            return EmbeddedRows(
                np.zeros(0, dtype=np.int64),
                np.array([], dtype=str),
                np.array([], dtype=str),
                [],
                np.zeros((0, n_labels), dtype=np.float32),
                {name: np.zeros((0, 0), dtype=np.float32) for name in modalities},
                {name: np.zeros(0, dtype=bool) for name in modalities},
            )
        return EmbeddedRows(
            np.concatenate([p.row_numbers for p in parts]),
            np.concatenate([p.patients for p in parts]),
            np.concatenate([p.studies for p in parts]),
            [site for p in parts for site in p.sites],
            np.concatenate([p.labels for p in parts]),
            {name: np.concatenate([p.embeddings[name] for p in parts]) for name in modalities},
            {name: np.concatenate([p.present[name] for p in parts]) for name in modalities},
        )


def eval_dataset(
    opened: OpenedModel, manifest: Manifest, modalities: Sequence[str], split: str | None, splits: dict[int, str]
) -> ManifestDataset:
    """The rows of ``split`` with the model's evaluation transforms for ``modalities``."""
    plugins = {name: opened.preprocess.modalities[name] for name in modalities}
    transforms = {name: opened.preprocess.transforms[name] for name in modalities}
    return ManifestDataset(manifest, plugins, split=split, transforms=transforms, splits=splits)


@torch.no_grad()
def embedded_batches(
    opened: OpenedModel,
    dataset: ManifestDataset,
    modalities: Sequence[str],
    summary: SkipSummary,
    indices: Sequence[int] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
    description: str = "embedding",
    worker_kind: str = "process",
) -> Iterator[EmbeddedRows]:
    """Embed the dataset (or its ``indices``) batch by batch; load failures go to ``summary``.

    Yields:
        One ``EmbeddedRows`` per batch that kept at least one row.
    """
    source = dataset if indices is None else Subset(dataset, list(indices))
    loader = make_loader(
        source, batch_size=batch_size, collate_fn=dataset.collate_fn, num_workers=num_workers, worker_kind=worker_kind
    )
    opened.model.eval()
    site_of = {row.row_number: row.site for row in dataset.manifest.rows}
    bar = tqdm(total=len(source), desc=description, unit="row", disable=not progress)
    try:
        for batch in loader:
            summary.add_markers(batch["skipped"])
            bar.update(batch["batch_size"] + len(batch["skipped"]))
            if is_empty_batch(batch):
                continue
            inputs = {key: batch[key] for name in modalities for key in (name, f"{name}_mask")}
            outputs = opened.model(move_to_device(inputs, opened.device))
            yield EmbeddedRows(
                row_numbers=np.asarray(batch["row"], dtype=np.int64),
                patients=np.asarray(batch["patient_id"]),
                studies=np.asarray(batch["study_id"]),
                sites=[site_of[row] for row in batch["row"]],
                labels=batch["labels"].numpy(),
                embeddings={name: outputs["features"][name].float().cpu().numpy() for name in modalities},
                present={name: outputs["masks"][name].cpu().numpy().astype(bool) for name in modalities},
            )
    finally:
        bar.close()


def embed_rows(
    opened: OpenedModel,
    manifest: Manifest,
    modalities: Sequence[str],
    split: str | None,
    splits: dict[int, str],
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
    worker_kind: str = "process",
) -> tuple[EmbeddedRows, SkipSummary]:
    """Embed every usable row of ``split`` for ``modalities``; returns the rows and what was skipped (and why)."""
    dataset = eval_dataset(opened, manifest, modalities, split, splits)
    summary = SkipSummary().merge(dataset.summary)
    parts = list(
        embedded_batches(
            opened,
            dataset,
            modalities,
            summary,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
            description=f"embedding {split or ALL_ROWS} rows",
            worker_kind=worker_kind,
        )
    )
    rows = EmbeddedRows.concatenate(parts, modalities, len(manifest.label_names))
    log.info("%s split: %d rows embedded, %d skipped", split or ALL_ROWS, len(rows), summary.total())
    return rows, summary
