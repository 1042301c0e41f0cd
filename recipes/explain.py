"""Grounding maps (``medclip explain``): where in a scan, slide, ECG or image a token-level model sees a phrase.

For each chosen manifest row and each phrase, the phrase is embedded with the model's text tower, every token of the
row's input (ViT patches, feature-map positions, ECG time windows, slide patches) is compared with it (cosine
similarity of the projected tokens, as the token losses compare them), and the scores are drawn over the input:
volumes as a montage of the most activated slices plus the middle one, slides as a patch grid over the patches, ECGs
as a heat band behind every lead, 2-D images as an overlay. See docs/explain.md for what the maps do NOT mean
(token similarity is not causal attribution).

Rows: ``rows: [1, 5, 9]`` (manifest row numbers), or the first ``limit`` usable rows of ``split``. Outputs in ``out``:
one PNG per (row, phrase), ``row00005_phrase01.png`` (named by manifest row number, never by a patient id or file
name), and ``explain.json`` with, per map, the row number, the phrase, the max / mean token score, the global
(pooled) score and the top token's region. Modalities whose encoder has no tokens, or whose plugin gives no token
layout, are refused with a message naming the modality.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

import medclip
from medclip.config import ConfigError
from medclip.data import SkipSummary
from medclip.device import resolve_device
from medclip.eval.evaluation_data import check_split_name, open_evaluation_data
from medclip.eval.report import write_json
from medclip.explain import PHRASE_EMBEDDING, check_explainable, embed_phrases, ground
from medclip.explain.grounding import text_modality_of

COMMAND = "explain"
HELP = "grounding maps: phrase -> region heatmaps; --checkpoint D --manifest M --modality ct --phrase TEXT --out D"
DEFAULT_CONFIG = None
FLAG_FIELDS = {"phrase": "phrases"}  # --phrase TEXT (repeatable) fills `phrases`

logger = logging.getLogger("medclip.recipes.explain")


@dataclass
class Config:
    checkpoint: str = ""  # a medclip checkpoint directory of a token-level model
    manifest: str = ""  # CSV or Parquet manifest holding the inputs
    root: str = ""  # relative paths in the manifest resolve against this (default: the manifest's folder)
    out: str = "runs/explain"
    modality: str = "ct"  # the input the maps are drawn on: ct, oct, wsi, ecg, image
    text_modality: str = ""  # the tower that embeds the phrases; empty = the model's only text modality
    phrases: list[str] = field(default_factory=list)  # e.g. ["left lower lobe nodule", "pleural effusion"]
    rows: list[int] = field(default_factory=list)  # manifest row numbers; empty = the first `limit` rows of `split`
    split: str = "test"  # train | val | test | all (the checkpoint's patient split), when `rows` is empty
    limit: int = 8  # rows explained from `split`
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True


def image_name(row: int, phrase_index: int) -> str:
    """The PNG of one map: the manifest row number and the phrase's position (never an identifier)."""
    return f"row{row:05d}_phrase{phrase_index + 1:02d}.png"


def main(cfg: Config) -> dict[str, float]:
    if not cfg.phrases:
        raise ConfigError("give at least one phrase: phrases=['left lower lobe nodule'] (or --phrase on the CLI)")
    if not cfg.checkpoint:
        raise ConfigError("checkpoint is empty: point it at a medclip checkpoint directory")
    if cfg.limit < 1:
        raise ConfigError(f"limit must be >= 1, got {cfg.limit}")
    split = check_split_name(cfg.split)
    model = medclip.load_model(cfg.checkpoint, resolve_device(cfg.device))
    check_explainable(model, cfg.modality)
    text_modality = text_modality_of(model, cfg.text_modality)
    data = open_evaluation_data(model, cfg.manifest, [cfg.modality], cfg.root)
    dataset = data.dataset(model, [cfg.modality], None if cfg.rows else split)
    summary = SkipSummary().merge(dataset.summary)
    usable = dataset.row_numbers()
    if cfg.rows:
        unknown = sorted(set(cfg.rows) - set(usable) - summary.skipped_rows)
        if unknown:
            raise ConfigError(f"rows {unknown} are not data rows of the manifest (rows are numbered from 1)")
        position = {row: index for index, row in enumerate(usable)}
        indices = [position[row] for row in dict.fromkeys(cfg.rows) if row in position]
    else:
        indices = list(range(min(cfg.limit, len(usable))))
    phrase_embeddings = embed_phrases(model, cfg.phrases, text_modality)
    collate = model.preprocess.modalities[cfg.modality].collate
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    maps, explained = [], []
    for index in tqdm(indices, desc="explaining", unit="row", disable=not cfg.progress):
        sample = dataset[index]
        if "skipped" in sample:
            summary.add(*sample["skipped"])
            continue
        row = int(sample["row"])
        for phrase_index, grounding in enumerate(
            ground(model, cfg.modality, collate([sample]), cfg.phrases, phrase_embeddings)
        ):
            name = image_name(row, phrase_index)
            grounding.layout.render(grounding.scores, f"row {row}: {grounding.phrase}", out / name)
            maps.append({"row": row, "phrase_index": phrase_index, "image": name, **grounding.summary()})
        explained.append(row)
    write_json(
        out / "explain.json",
        {
            "modality": cfg.modality,
            "text_modality": text_modality,
            "phrase_embedding": PHRASE_EMBEDDING,
            "score": "cosine similarity of each projected token with the phrase embedding",
            "phrases": list(cfg.phrases),
            "split": "rows" if cfg.rows else cfg.split,
            "rows": explained,
            "maps": maps,
            "skipped": summary.to_dict(),
        },
    )
    logger.info("wrote %d maps of %d rows to %s (%d rows skipped)", len(maps), len(explained), out, summary.total())
    return {"n_rows": float(len(explained)), "n_maps": float(len(maps)), "n_skipped": float(summary.total())}
