"""Embedding export (``medclip embed``): every study of a manifest -> Parquet, resumable, for downstream work.

One Parquet row per (study, modality): ``study`` and ``patient`` pseudonyms (never the raw identifiers), ``modality``,
``row`` (the manifest row number, to join back), ``split`` and ``vector`` (a fixed-size list of float32, unit norm).
Rows are written in parts (``embeddings/part-NNNNN.parquet``, each written to a temporary name and renamed, so a
crash never leaves half a part); re-running the same command skips the rows already written, so a large archive is
embedded across interruptions. ``pandas.read_parquet(out / "embeddings")`` reads all parts as one table.

Resuming with another checkpoint, manifest or modality list is refused: a table must not mix two models' spaces.
``metrics.json`` -> ``diagnostics``, ``embedding_map.png`` and ``report.html`` / ``report.md`` describe the health of
the exported space (modality gap, uniformity, effective rank, sites) on a seeded sample of the exported rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import medclip
from medclip.config import ConfigError
from medclip.data import SkipSummary
from medclip.device import resolve_device
from medclip.embedding import EmbeddedRows, LoaderOptions, embed_dataset
from medclip.eval.embedding_diagnostics import export_diagnostics
from medclip.eval.evaluation_data import check_split_name, open_evaluation_data
from medclip.eval.hygiene import checkpoint_sha256, provenance_record
from medclip.eval.report import provenance_section, write_json, write_report

COMMAND = "embed"
HELP = "export embeddings of a manifest to Parquet (pseudonymised ids, modality, vector), resumable, with progress"
DEFAULT_CONFIG = "embed.yaml"
PARTS_DIR = "embeddings"
STATE_FILE = "embeddings_meta.json"


@dataclass
class Config:
    checkpoint: str = "quickstart_out/checkpoint"
    manifest: str = "quickstart_out/data/manifest.csv"
    root: str = ""
    out: str = "runs/embed"
    modalities: list[str] = field(default_factory=list)  # empty = every checkpoint modality the manifest has
    split: str = "all"  # all | train | val | test (the checkpoint's patient split)
    rows_per_file: int = 4096  # manifest rows per Parquet part (whole batches): an interruption loses one part at most
    resume: bool = True  # skip rows already written by an earlier run into the same out
    batch_size: int = 64
    num_workers: int = 0
    worker_kind: str = "process"  # process | thread (threads load cached volumes several times faster; docs/ct.md)
    device: str = "auto"
    diagnostics: bool = True  # embedding health of the exported rows (gap, uniformity, rank, sites) + report
    diagnostics_max_rows: int = 4096  # the health numbers use a seeded sample of this many exported rows (0 = all)
    report_formats: list[str] = field(default_factory=lambda: ["html", "markdown"])
    progress: bool = True


def written_rows(folder: Path) -> set[int]:
    """Manifest row numbers already in the Parquet parts of ``folder``."""
    done: set[int] = set()
    for part in sorted(folder.glob("part-*.parquet")):
        done.update(pq.read_table(part, columns=["row"]).column("row").to_pylist())
    return done


def write_part(folder: Path, rows: EmbeddedRows, modalities: list[str], splits: dict[int, str]) -> Path:
    """Write the (row, modality) pairs present in ``rows`` as the next part, atomically."""
    records = {"study": [], "patient": [], "modality": [], "row": [], "split": [], "vector": []}
    for name in modalities:
        present = rows.present[name]
        count = int(present.sum())
        records["study"] += list(rows.studies[present])
        records["patient"] += list(rows.patients[present])
        records["modality"] += [name] * count
        records["row"] += rows.row_numbers[present].tolist()
        records["split"] += [splits.get(int(r), "") for r in rows.row_numbers[present]]
        records["vector"] += list(rows.embeddings[name][present].astype(np.float32))
    width = len(records["vector"][0]) if records["vector"] else 0
    vectors = pa.FixedSizeListArray.from_arrays(
        pa.array(np.concatenate(records["vector"]) if width else np.zeros(0, np.float32), pa.float32()), width
    )
    table = pa.table(
        {
            "study": pa.array(records["study"], pa.string()),
            "patient": pa.array(records["patient"], pa.string()),
            "modality": pa.array(records["modality"], pa.string()),
            "row": pa.array(records["row"], pa.int64()),
            "split": pa.array(records["split"], pa.string()),
            "vector": vectors,
        }
    )
    numbers = [int(part.stem.split("-")[1]) for part in folder.glob("part-*.parquet")]
    number = max(numbers, default=-1) + 1  # after the last part, even when an earlier one was removed
    path = folder / f"part-{number:05d}.parquet"
    temporary = folder / f".part-{number:05d}.parquet.tmp"
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    return path


def check_resume_state(out: Path, state: dict) -> None:
    """Refuse to append to parts written with another checkpoint, manifest, split or modality list."""
    path = out / STATE_FILE
    if not path.is_file():
        return
    previous = json.loads(path.read_text())
    differing = [key for key in state if previous.get(key) != state[key]]
    if differing:
        raise ConfigError(
            f"{out} holds embeddings written with other {', '.join(differing)}; use another out (or resume: false "
            "after removing the old parts) so that one table never mixes two embedding spaces"
        )


def main(cfg: Config) -> dict[str, float]:
    if cfg.rows_per_file < 1:
        raise ConfigError(f"rows_per_file must be >= 1, got {cfg.rows_per_file}")
    out = Path(cfg.out)
    folder = out / PARTS_DIR
    split = check_split_name(cfg.split)
    model = medclip.load_model(cfg.checkpoint, resolve_device(cfg.device))
    modalities = list(cfg.modalities) or list(model.preprocess.modalities)
    data = open_evaluation_data(model, cfg.manifest, modalities, cfg.root)
    manifest, splits = data.manifest, data.splits
    state = {
        "checkpoint_sha256": checkpoint_sha256(cfg.checkpoint),
        "manifest_sha256": manifest.manifest_hash(),
        "pseudonym_key_fingerprint": manifest.key_fingerprint,
        "modalities": modalities,
        "split": cfg.split,
    }
    if cfg.resume:
        check_resume_state(out, state)
    elif folder.exists() and any(folder.glob("part-*.parquet")):
        raise ConfigError(f"{folder} already holds parts and resume is false; remove them or use another out")
    folder.mkdir(parents=True, exist_ok=True)
    write_json(out / STATE_FILE, state)

    dataset = data.dataset(model, modalities, split)
    done = written_rows(folder)
    pending = [index for index, row in enumerate(dataset.row_numbers()) if row not in done]
    summary = SkipSummary().merge(dataset.summary)
    buffered: list[EmbeddedRows] = []
    written = parts = 0

    def flush() -> None:
        nonlocal written, parts
        rows = EmbeddedRows.concatenate(buffered, modalities, len(manifest.label_names), len(manifest.target_names))
        write_part(folder, rows, modalities, splits)
        written += len(rows)
        parts += 1
        buffered.clear()

    batches = embed_dataset(
        model,
        dataset,
        modalities,
        summary,
        pending,
        LoaderOptions.of(cfg),
        description=f"embedding {len(pending)} rows",
    )
    for batch in batches:
        buffered.append(batch)
        if sum(len(part) for part in buffered) >= cfg.rows_per_file:
            flush()
    if buffered:
        flush()
    provenance = provenance_record(
        COMMAND,
        cfg.checkpoint,
        manifest.manifest_hash(),
        manifest.key_fingerprint,
        None,
        None,
        split=cfg.split,
        modalities=modalities,
    )
    metrics = {
        "provenance": provenance,
        "rows_already_written": len(done),
        "rows_written_now": written,
        "parts_written_now": parts,
        "rows_in_split": len(dataset),
        "skipped": summary.to_dict(),
        "output": f"{PARTS_DIR}/part-*.parquet",
    }
    diagnostics = export_diagnostics(cfg, folder, modalities, {row.row_number: row.site for row in manifest.rows})
    metrics["diagnostics"] = diagnostics.block
    write_json(out / "metrics.json", metrics)
    if diagnostics.sections:
        sections = [*diagnostics.sections, provenance_section(provenance)]
        write_report(out, f"Embedding export: {', '.join(modalities)}", sections, cfg.report_formats)
    return {
        "rows_already_written": float(len(done)),
        "rows_written_now": float(written),
        "rows_skipped": float(summary.total()),
    }
