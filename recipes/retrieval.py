"""Cross-modal retrieval (``medclip retrieve``): report -> scan, scan -> report, slide -> expression, ...

Any query modality against any target modality of a checkpoint. On the rows of one split that have both modalities
(one study per patient with ``deduplicate_patients``, so a patient's follow-up study is never a "wrong" answer):

- Recall@1/5/10/50 and median rank of the paired study, both directions, with patient-bootstrap 95% CIs;
- label-aware mAP (relevant = same set of findings) and nDCG@k (gain = overlap of findings) when the manifest has
  ``label:<finding>`` columns;
- a search index over every target study of the split ("exact" torch search, or FAISS: "faiss" exhaustive,
  "faiss_ivf" approximate for large archives), saved to ``index_dir`` and reloaded from disk for searching;
- ``query_text: "..."``: a free-text search returning the top-k studies (pseudonymised ids) with their scores.

Outputs in ``out``: ``metrics.json``, ``examples.png`` (example queries and their top hits), ``query_results.json``
(free-text search), ``index/`` and ``report.html`` / ``report.md``; every hit carries its 1-based manifest ``row``.
Local-only, in ``out/local/`` (never to be shared): ``row_references.json`` (row -> file references) and
``browser.html`` (the example queries beside thumbnails of their top-k hits).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import medclip
from medclip.config import ConfigError
from medclip.device import resolve_device
from medclip.embedding import EmbeddedRows, LoaderOptions, embed, embed_split
from medclip.eval import bootstrap_ci, retrieval_ranks
from medclip.eval.browser import query_rows, write_browser, write_row_references
from medclip.eval.clinical_plots import plot_retrieval_examples
from medclip.eval.embedding_diagnostics import recipe_diagnostics
from medclip.eval.evaluation_data import check_split_name, open_evaluation_data, require_modalities
from medclip.eval.findings import nanmean
from medclip.eval.gap_retrieval import (
    check_gap_centroids,
    gap_reference,
    gap_removed_section,
    same_modality_section,
    without_gap,
)
from medclip.eval.hygiene import check_unseen_patients, checkpoint_sha256, evaluation_provenance
from medclip.eval.index import INDEXES, build_index, load_index
from medclip.eval.ranking import finding_relevance, label_aware_retrieval
from medclip.eval.report import ReportSection, data_section, format_ci, provenance_section, write_json, write_report
from medclip.eval.retrieval import SAME_PATIENT_POLICIES
from medclip.eval.same_modality_evaluation import same_modality_statistics

COMMAND = "retrieve"
HELP = "cross-modal retrieval (any modality -> any modality): Recall@K, mAP, nDCG with CIs; FAISS index; text search"
DEFAULT_CONFIG = "retrieval.yaml"


@dataclass
class Config:
    checkpoint: str = "quickstart_out/checkpoint"
    manifest: str = "quickstart_out/data/manifest.csv"
    root: str = ""
    out: str = "runs/retrieval"
    query_modality: str = "report"  # e.g. report, to find the scans that match it
    target_modality: str = "expression"  # the archive searched
    split: str = "test"  # evaluated patients: test = those pretraining held out; train | val | test | all
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 50])
    deduplicate_patients: bool = True  # one study per patient in the evaluation (first in manifest order)
    ndcg_k: int = 10
    index: str = "exact"  # exact | faiss | faiss_ivf
    index_options: dict[str, Any] = field(default_factory=dict)  # faiss_ivf: nlist, nprobe
    index_dir: str = ""  # where the index is saved; default <out>/index
    query_text: str = ""  # a free-text query; its top_k studies are written to query_results.json
    text_modality: str = "report"  # the modality query_text is embedded with
    top_k: int = 10
    n_examples: int = 6  # example queries drawn in examples.png
    remove_gap: bool = False  # also score every direction with each modality centred on its centroid (side by side)
    gap_centroids: str = "val"  # rows the centroids come from: train | val | test | all | evaluated (transductive)
    same_modality: list[str] = field(default_factory=list)  # e.g. [expression]: study -> study within one modality
    same_patient: str = "exclude"  # same-modality: a patient's other studies leave the gallery | count as "positive"
    diagnostics: bool = True  # embedding health (gap, alignment, uniformity, rank, sites) + embedding_map.png
    diagnostics_max_rows: int = 4096  # uniformity / effective rank on at most this many rows (0 = all)
    n_bootstrap: int = 1000
    confidence: float = 0.95
    batch_size: int = 64
    num_workers: int = 0
    worker_kind: str = "process"  # process | thread (threads load cached volumes several times faster; docs/ct.md)
    device: str = "auto"
    seed: int = 0
    allow_seen_patients: bool = False
    report_formats: list[str] = field(default_factory=lambda: ["html", "markdown"])
    browser: bool = True  # out/local/browser.html + row_references.json (local-only: thumbnails, file references)
    progress: bool = True


def first_study_per_patient(patients: np.ndarray) -> np.ndarray:
    """(N,) bool keeping each patient's first row: the patient-level de-duplication of the evaluation."""
    _, first = np.unique(patients, return_index=True)
    keep = np.zeros(len(patients), dtype=bool)
    keep[first] = True
    return keep


def recall_statistics(
    query: np.ndarray, target: np.ndarray, patients: np.ndarray, ks: list[int], cfg: Config
) -> dict[str, Any]:
    """Recall@K and median rank of the paired target, with CIs from resampling the queries' patients."""
    ranks = retrieval_ranks(query, target).numpy().astype(np.float64)  # (N,)
    per_query = np.stack([*(ranks <= k for k in ks), ranks], axis=1).astype(np.float64)  # (N, len(ks) + 1)

    def summary(_: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.r_[rows[:, :-1].mean(axis=0), np.median(rows[:, -1])]

    point = summary(ranks, per_query)
    low, high = bootstrap_ci(
        summary, ranks, per_query, groups=patients, n_boot=cfg.n_bootstrap, seed=cfg.seed, alpha=1 - cfg.confidence
    )
    names = [f"R@{k}" for k in ks] + ["median_rank"]
    return {
        name: {"value": float(point[i]), "ci_low": float(low[i]), "ci_high": float(high[i])}
        for i, name in enumerate(names)
    }


def label_statistics(query, target, labels, patients, cfg: Config) -> dict[str, Any]:
    """mAP (same findings) and nDCG@k (finding overlap) over rows with every label known, with patient CIs."""
    known = ~np.isnan(labels).any(axis=1)
    result: dict[str, Any] = {"n_queries": int(known.sum()), "rows_with_unknown_labels": int((~known).sum())}
    if known.sum() < 2:
        return result
    per_query = label_aware_retrieval(query[known], target[known], labels[known], labels[known], cfg.ndcg_k)
    values = np.stack([per_query["ap"], per_query["ndcg"]], axis=1)  # (n, 2)
    point = nanmean(values)
    low, high = bootstrap_ci(
        lambda _, rows: nanmean(rows),
        values[:, 0],
        values,
        groups=patients[known],
        n_boot=cfg.n_bootstrap,
        seed=cfg.seed,
        alpha=1 - cfg.confidence,
    )
    for i, name in enumerate(("mAP", f"nDCG@{cfg.ndcg_k}")):
        result[name] = {"value": float(point[i]), "ci_low": float(low[i]), "ci_high": float(high[i])}
    result["queries_without_relevant_target"] = int(np.isnan(per_query["ap"]).sum())
    return result


def evaluate_pairs(
    query: np.ndarray, target: np.ndarray, pairs: EmbeddedRows, has_labels: bool, cfg: Config
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Recall (and, with label columns, mAP / nDCG) in both directions between paired query and target rows."""
    forward, backward = f"{cfg.query_modality}->{cfg.target_modality}", f"{cfg.target_modality}->{cfg.query_modality}"
    directions = {
        forward: recall_statistics(query, target, pairs.patients, cfg.ks, cfg),
        backward: recall_statistics(target, query, pairs.patients, cfg.ks, cfg),
    }
    label_aware = {}
    if has_labels:
        label_aware = {
            forward: label_statistics(query, target, pairs.labels, pairs.patients, cfg),
            backward: label_statistics(target, query, pairs.labels, pairs.patients, cfg),
        }
    return directions, label_aware


def example_queries(
    pairs: EmbeddedRows, cfg: Config, label_names: tuple[str, ...], n_hits: int = 5
) -> list[dict[str, Any]]:
    """The first ``n_examples`` queries with their top hits among the evaluated targets, each hit marked."""
    count = min(cfg.n_examples, len(pairs))
    if count <= 0:  # n_examples: 0 asks for none
        return []
    query = pairs.embeddings[cfg.query_modality][:count]
    index = build_index("exact", pairs.embeddings[cfg.target_modality], list(pairs.studies), list(pairs.patients))
    scores, positions = index.search(query, n_hits)
    labels = np.nan_to_num(pairs.labels, nan=-1.0)
    same_findings = (
        finding_relevance(np.clip(labels[:count], 0, 1), np.clip(labels, 0, 1))[0]
        if labels.shape[1]
        else np.zeros((count, len(pairs)), bool)
    )
    examples = []
    for i in range(count):
        hits = []
        for score, position in zip(scores[i], positions[i], strict=True):
            match = "paired" if position == i else "same findings" if same_findings[i, position] else "other"
            hits.append(
                {
                    "row": int(pairs.row_numbers[position]),
                    "study": pairs.studies[position],
                    "score": float(score),
                    "match": match,
                }
            )
        examples.append(
            {
                "row": int(pairs.row_numbers[i]),
                "query": pairs.studies[i],
                "findings": _finding_text(pairs.labels[i], label_names),
                "hits": hits,
            }
        )
    return examples


def _finding_text(labels: np.ndarray, names: tuple[str, ...]) -> str:
    positive = [name for name, value in zip(names, labels, strict=False) if value == 1.0]
    return ", ".join(positive) if positive else ("no finding" if len(names) else "")


def main(cfg: Config) -> dict[str, float]:
    if cfg.query_modality == cfg.target_modality:
        raise ConfigError("query_modality and target_modality must differ (cross-modal retrieval)")
    if cfg.index not in INDEXES:
        raise ConfigError(f"unknown index {cfg.index!r}; available: {', '.join(INDEXES.names())}")
    if not cfg.ks or any(k < 1 for k in cfg.ks):
        raise ConfigError(f"ks must be positive integers, got {cfg.ks}")
    if cfg.same_patient not in SAME_PATIENT_POLICIES:
        raise ConfigError(f"same_patient must be one of {', '.join(SAME_PATIENT_POLICIES)}, got {cfg.same_patient!r}")
    if cfg.remove_gap:
        check_gap_centroids(cfg.gap_centroids)
    if set(cfg.same_modality) - {cfg.query_modality, cfg.target_modality}:
        raise ConfigError(f"same_modality names modalities outside query/target modality: {cfg.same_modality}")
    out = Path(cfg.out)
    split = check_split_name(cfg.split)
    model = medclip.load_model(cfg.checkpoint, resolve_device(cfg.device))
    require_modalities(model, *([cfg.text_modality] if cfg.query_text else []))
    modalities = [cfg.query_modality, cfg.target_modality]
    data = open_evaluation_data(model, cfg.manifest, modalities, cfg.root)
    manifest = data.manifest
    # Checked on every patient of the split before anything is embedded (the evaluated pairs are a subset).
    hygiene = check_unseen_patients(
        cfg.checkpoint, data.patients(split), manifest.key_fingerprint, cfg.allow_seen_patients
    )
    dataset = data.dataset(model, modalities, split)
    rows, skips = embed_split(model, dataset, modalities, LoaderOptions.of(cfg))
    both = rows.present[cfg.query_modality] & rows.present[cfg.target_modality]
    pairs = rows.subset(both)
    keep = first_study_per_patient(pairs.patients) if cfg.deduplicate_patients else np.ones(len(pairs), bool)
    pairs = pairs.subset(keep)
    if len(pairs) < 2:
        raise ValueError(f"split {cfg.split!r} has {len(pairs)} usable rows with both {modalities}; need at least 2")

    query, target = pairs.embeddings[cfg.query_modality], pairs.embeddings[cfg.target_modality]
    directions, label_aware = evaluate_pairs(query, target, pairs, bool(manifest.label_names), cfg)
    gap = None
    if cfg.remove_gap:
        centroids, gap = gap_reference(
            model, data, modalities, cfg.gap_centroids, pairs, cfg.split, LoaderOptions.of(cfg)
        )
        gap["recall"], gap["label_aware"] = evaluate_pairs(
            without_gap(query, centroids[cfg.query_modality]),
            without_gap(target, centroids[cfg.target_modality]),
            pairs, bool(manifest.label_names), cfg,
        )  # fmt: skip
    same_modality = {
        name: same_modality_statistics(rows, name, cfg.ks, cfg.same_patient, cfg.n_bootstrap, cfg.seed, cfg.confidence)
        for name in cfg.same_modality
    }
    diagnostics = recipe_diagnostics(cfg, rows, modalities)

    # The searchable archive: every study of the split with the target modality (not de-duplicated).
    archive = rows.subset(rows.present[cfg.target_modality])
    metadata = {
        "checkpoint_sha256": checkpoint_sha256(cfg.checkpoint),
        "manifest_sha256": manifest.manifest_hash(),
        "modality": cfg.target_modality,
        "split": cfg.split,
    }
    index_dir = Path(cfg.index_dir) if cfg.index_dir else out / "index"
    built = build_index(
        cfg.index,
        archive.embeddings[cfg.target_modality],
        list(archive.studies),
        list(archive.patients),
        metadata,
        cfg.index_options,
    )
    built.save(index_dir)
    index = load_index(index_dir)  # search with what is on disk: the saved index is the one users will reuse
    query_results = None
    if cfg.query_text:
        vector = embed(model, cfg.text_modality, [cfg.query_text])  # (1, D)
        hits = index.hits(vector[0], cfg.top_k)
        query_results = {
            # the text itself is not stored: a free-text query can hold a name; its hash identifies it
            "query_text_sha256": hashlib.sha256(cfg.query_text.encode()).hexdigest(),
            "text_modality": cfg.text_modality,
            "index": cfg.index,
            "hits": [
                {
                    "rank": r + 1,
                    "row": int(archive.row_numbers[h.position]),  # 1-based manifest row (files: local/)
                    "study": h.study,
                    "patient": h.patient,
                    "score": h.score,
                }
                for r, h in enumerate(hits)
            ],
        }
        write_json(out / "query_results.json", query_results)
        print(f"top {len(hits)} {cfg.target_modality} studies for the query:")
        for hit in query_results["hits"]:
            print(
                f"  {hit['rank']:>3}  row {hit['row']}  {hit['study']}  (patient {hit['patient']})  "
                f"score {hit['score']:.4f}"
            )

    examples = example_queries(pairs, cfg, manifest.label_names)
    plot_retrieval_examples(examples, out / "examples.png", f"{cfg.query_modality} -> {cfg.target_modality}")
    if cfg.browser:
        references = dataset.row_references()
        write_row_references(out, references)
        plugins = {name: model.preprocess[name].plugin for name in modalities}
        browsed = example_queries(pairs, cfg, manifest.label_names, n_hits=cfg.top_k)
        write_browser(
            out,
            f"Retrieval browser: {cfg.query_modality} -> {cfg.target_modality} (split '{cfg.split}')",
            query_rows(browsed, references, plugins, cfg.query_modality, cfg.target_modality),
            [
                f"Top {min(cfg.top_k, len(pairs))} of the {len(pairs)} evaluated {cfg.target_modality} studies for "
                f"the first {len(browsed)} queries. Cards show 1-based manifest row numbers; "
                "local/row_references.json maps them to files. Local-only: this page shows patient images and report "
                "text."
            ],
        )
    provenance = evaluation_provenance(
        COMMAND,
        cfg.checkpoint,
        manifest,
        cfg.seed,
        cfg.n_bootstrap,
        cfg.confidence,
        split=cfg.split,
        query_modality=cfg.query_modality,
        target_modality=cfg.target_modality,
        deduplicate_patients=cfg.deduplicate_patients,
        index=cfg.index,
        index_options=cfg.index_options,
        remove_gap=cfg.remove_gap,
        gap_centroids=cfg.gap_centroids if cfg.remove_gap else None,
        same_modality=cfg.same_modality,
        same_patient=cfg.same_patient,
    )
    counts = {
        "rows_embedded": len(rows),
        "rows_with_both_modalities": int(both.sum()),
        "rows_removed_by_patient_deduplication": int((~keep).sum()),
        "evaluated_pairs": len(pairs),
        "patients": len(set(pairs.patients)),
        "archive_studies": len(index),
        "skipped": skips.to_dict(),
    }
    metrics = {
        "provenance": provenance,
        "hygiene": hygiene,
        "data": counts,
        "recall": directions,
        "label_aware": label_aware,
        "gap_removed": gap,
        "same_modality": same_modality,
        "diagnostics": diagnostics.block,
        "query_results": query_results,
        "examples": examples,
    }
    write_json(out / "metrics.json", metrics)
    plain = _merged(directions, label_aware)
    extra = [gap_removed_section(plain, _merged(gap["recall"], gap["label_aware"]), gap)] if gap else []
    extra += [same_modality_section(same_modality)] if same_modality else []
    _report(out, cfg, directions, label_aware, counts, hygiene, provenance, extra + diagnostics.sections)
    summary: dict[str, float] = {"evaluated_pairs": float(len(pairs))}
    groups = [("", directions), ("", label_aware)]
    groups += [("gap removed ", gap["recall"]), ("gap removed ", gap["label_aware"])] if gap else []
    groups += [("same-modality ", {f"{name}->{name}": entry for name, entry in same_modality.items()})]
    for prefix, group in groups:
        for direction, entries in group.items():
            for name, entry in entries.items():
                if isinstance(entry, dict):
                    summary[f"{prefix}{direction} {name}"] = entry["value"]
    return summary


def _merged(recall: dict[str, Any], label_aware: dict[str, Any]) -> dict[str, Any]:
    """Recall and label-aware entries merged per direction, for the side-by-side table."""
    return {direction: {**entries, **label_aware.get(direction, {})} for direction, entries in recall.items()}


def _report(out: Path, cfg: Config, directions, label_aware, data, hygiene, provenance, extra) -> None:
    rows = []
    for direction, entries in directions.items():
        rows += [[direction, name, format_ci(entry)] for name, entry in entries.items()]
    for direction, entries in label_aware.items():
        rows += [[direction, name, format_ci(entry)] for name, entry in entries.items() if isinstance(entry, dict)]
    sections = [
        ReportSection(
            "What was measured",
            [
                f"Retrieval between {cfg.query_modality} and {cfg.target_modality} on {data['evaluated_pairs']} "
                f"studies of {data['patients']} patients (split '{cfg.split}'"
                + (", one study per patient)." if cfg.deduplicate_patients else ")."),
                "Recall@K: the paired study is among the K most similar. mAP: relevant = same set of findings. "
                f"nDCG@{cfg.ndcg_k}: graded by the overlap of findings. 95% CIs resample patients.",
            ],
            ["direction", "metric", "value (95% CI)"],
            rows,
            ["examples.png"],
        ),
        *extra,
        data_section(
            {
                cfg.split: {
                    "rows": data["evaluated_pairs"],
                    "patients": data["patients"],
                    "skipped_rows": data["skipped"]["skipped_rows"],
                }
            },
            hygiene,
        ),
        provenance_section(provenance),
    ]
    write_report(out, f"Retrieval: {cfg.query_modality} <-> {cfg.target_modality}", sections, cfg.report_formats)
