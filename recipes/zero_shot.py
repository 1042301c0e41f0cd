"""Zero-shot diagnosis (``medclip zero-shot``): score findings from prompts, with honest statistics.

No classifier is trained. Each finding of a prompt set (``recipes/prompts/*.yaml``) is described by several positive
and negative phrasings x templates; their embeddings are averaged (prompt ensembling) and every study of the query
modality (a CT, a slide, a cell's expression profile) is scored against them:

- ``mode: binary``: per finding, softmax over [positive, negative] similarity (findings do not compete);
- ``mode: multiclass``: softmax over the findings' positive embeddings (exactly one class per row, e.g. cell types).

Metrics on the test patients (the ones pretraining held out): AUROC, AUPRC, and sensitivity / specificity / F1 at a
threshold chosen on validation patients, each with a 95% CI from resampling patients; calibration (ECE, reliability
curve); a breakdown per site when the manifest has a ``site`` column. Outputs in ``out``: ``metrics.json``,
``roc.png``, ``reliability.png``, ``report.html`` / ``report.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import medclip
from medclip.config import ConfigError
from medclip.device import resolve_device
from medclip.embedding import EmbeddedRows, LoaderOptions, embed, embed_split
from medclip.eval import class_embeddings, zero_shot_scores
from medclip.eval.clinical_plots import plot_findings
from medclip.eval.evaluation_data import check_split_name, open_evaluation_data, require_modalities
from medclip.eval.findings import choose_thresholds, evaluate_findings, evaluate_multiclass
from medclip.eval.hygiene import check_unseen_patients, evaluation_provenance
from medclip.eval.prompts import PromptSet, read_prompt_set
from medclip.eval.report import (
    ReportSection,
    data_section,
    findings_sections,
    format_ci,
    provenance_section,
    write_json,
    write_report,
)
from medclip.eval.zero_shot_binary import binary_zero_shot_scores
from recipes.common import resolve_prompt_file

COMMAND = "zero-shot"
HELP = "zero-shot diagnosis from YAML prompt sets: AUROC/AUPRC/F1 with patient-bootstrap CIs, calibration, report"
DEFAULT_CONFIG = "zero_shot.yaml"
MODES = ("binary", "multiclass")
NO_SPLIT = "none"  # threshold_split value: no validation rows, thresholds fall back to 0.5 (and the report says so)


@dataclass
class Config:
    checkpoint: str = "quickstart_out/checkpoint"  # a medclip checkpoint directory
    manifest: str = "quickstart_out/data/manifest.csv"  # rows to diagnose, with label:<finding> columns
    root: str = ""  # relative paths in the manifest resolve against this (default: the manifest's folder)
    out: str = "runs/zero_shot"
    query_modality: str = "expression"  # what is diagnosed (ct, wsi, ecg, expression, ...)
    text_modality: str = "report"  # the modality the prompts are embedded with
    prompts: str = "pbmc68k_cell_types"  # a prompt-set YAML file, or the name of a bundled one
    findings: list[str] = field(default_factory=list)  # evaluate these findings only; empty = all in the prompt set
    mode: str = "multiclass"  # binary (findings independent) | multiclass (one class per row)
    split: str = "test"  # evaluated patients: test = those pretraining held out; train | val | test | all
    threshold_split: str = "val"  # patients the operating thresholds are chosen on; "none" = fixed 0.5
    threshold_rule: str = "youden"  # youden (sensitivity + specificity) | f1
    temperature: float = 0.0  # softmax temperature; 0 = the model's own learned temperature
    n_bootstrap: int = 1000  # bootstrap replicates for the CIs
    confidence: float = 0.95
    calibration_bins: int = 10
    min_site_rows: int = 20  # smallest site reported on its own
    batch_size: int = 64
    num_workers: int = 0
    worker_kind: str = "process"  # process | thread (threads load cached volumes several times faster; docs/ct.md)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0  # bootstrap seed
    allow_seen_patients: bool = False  # evaluate even on patients seen in pretraining (the report says so)
    report_formats: list[str] = field(default_factory=lambda: ["html", "markdown"])
    progress: bool = True


def prompt_class_embeddings(model: torch.nn.Module, cfg: Config, prompts: PromptSet, findings: list[str]):
    """(K, D) positive and, in binary mode, (K, D) negative class embeddings, each the mean of its prompts."""

    def ensemble(texts_per_finding: list[list[str]]) -> torch.Tensor:
        flat = [text for texts in texts_per_finding for text in texts]
        vectors = embed(model, cfg.text_modality, flat, batch_size=cfg.batch_size)
        return class_embeddings(list(torch.split(vectors, [len(texts) for texts in texts_per_finding])))  # (K, D)

    positive = ensemble([prompts.positive_prompts(name) for name in findings])
    negative = ensemble([prompts.negative_prompts(name) for name in findings]) if cfg.mode == "binary" else None
    return positive, negative


def finding_scores(rows: EmbeddedRows, cfg: Config, positive, negative, logit_scale: float) -> np.ndarray:
    """(N, K) probabilities of each finding for each row."""
    query = torch.from_numpy(rows.embeddings[cfg.query_modality])
    if cfg.mode == "binary":
        return binary_zero_shot_scores(query, positive, negative, logit_scale).numpy()
    return zero_shot_scores(query, positive, logit_scale=logit_scale).numpy()


def _check(cfg: Config) -> None:
    if cfg.mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if not 0.0 < cfg.confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {cfg.confidence}")
    if cfg.temperature < 0:
        raise ConfigError(f"temperature must be >= 0 (0 = the model's own), got {cfg.temperature}")


def main(cfg: Config) -> dict[str, float]:
    _check(cfg)
    out = Path(cfg.out)
    test_split = check_split_name(cfg.split)
    threshold_split = (
        None if cfg.threshold_split == NO_SPLIT else check_split_name(cfg.threshold_split, "threshold_split")
    )
    prompts = read_prompt_set(resolve_prompt_file(cfg.prompts))
    findings = list(cfg.findings) or list(prompts.findings)
    missing = [name for name in findings if name not in prompts.findings]
    if missing:
        raise ConfigError(f"findings {missing} have no prompts in {prompts.source}; it covers {list(prompts.findings)}")
    if cfg.mode == "binary":
        prompts.require_negatives(findings)

    model = medclip.load_model(cfg.checkpoint, resolve_device(cfg.device))
    modalities = [cfg.query_modality]
    require_modalities(model, cfg.text_modality)
    data = open_evaluation_data(model, cfg.manifest, modalities, cfg.root)
    manifest = data.manifest
    columns = data.label_columns(findings)
    scored_splits = [test_split] if threshold_split is None else [test_split, threshold_split]
    hygiene = check_unseen_patients(
        cfg.checkpoint, data.patients(*scored_splits), manifest.key_fingerprint, cfg.allow_seen_patients
    )
    options = LoaderOptions.of(cfg)
    test, test_skips = embed_split(model, data.dataset(model, modalities, test_split), modalities, options)
    if len(test) == 0:
        raise ValueError(f"no usable rows in split {cfg.split!r} of the manifest ({test_skips.total()} skipped)")
    validation = None
    if threshold_split is not None and threshold_split != test_split:
        validation, _ = embed_split(model, data.dataset(model, modalities, threshold_split), modalities, options)

    scale = 1.0 / cfg.temperature if cfg.temperature > 0 else float(model.logit_scale.detach())
    positive, negative = prompt_class_embeddings(model, cfg, prompts, findings)
    y_test, scores_test = test.labels[:, columns], finding_scores(test, cfg, positive, negative, scale)
    if validation is not None and len(validation):
        thresholds, sources = choose_thresholds(
            validation.labels[:, columns],
            finding_scores(validation, cfg, positive, negative, scale),
            len(findings),
            cfg.threshold_rule,
        )
    else:
        thresholds, sources = choose_thresholds(None, None, len(findings), cfg.threshold_rule)
    alpha = 1.0 - cfg.confidence
    statistics = {"n_boot": cfg.n_bootstrap, "seed": cfg.seed, "alpha": alpha, "n_bins": cfg.calibration_bins}
    has_sites = any(site is not None for site in test.sites)
    result = evaluate_findings(
        findings,
        y_test,
        scores_test,
        test.patients,
        thresholds,
        sources,
        sites=test.sites if has_sites else None,
        min_site_rows=cfg.min_site_rows,
        **statistics,
    )
    multiclass = (
        evaluate_multiclass(y_test, scores_test, test.patients, **statistics) if cfg.mode == "multiclass" else None
    )
    images = plot_findings(out, findings, y_test, scores_test, result, cfg.calibration_bins)

    provenance = evaluation_provenance(
        COMMAND,
        cfg.checkpoint,
        manifest,
        cfg.seed,
        cfg.n_bootstrap,
        cfg.confidence,
        prompts.summary(),
        split=cfg.split,
        threshold_split=cfg.threshold_split,
        threshold_rule=cfg.threshold_rule,
        mode=cfg.mode,
        query_modality=cfg.query_modality,
        text_modality=cfg.text_modality,
        logit_scale=scale,
    )
    split_rows = {
        cfg.split: {"rows": len(test), "patients": len(set(test.patients)), "skipped_rows": test_skips.total()},
    }
    if validation is not None:
        split_rows[cfg.threshold_split] = {"rows": len(validation), "patients": len(set(validation.patients))}
    metrics = {
        "provenance": provenance,
        "hygiene": hygiene,
        "data": {"splits": split_rows, "skipped": test_skips.to_dict()},
        "findings_not_evaluated": [name for name in manifest.label_names if name not in findings],
        "zero_shot": result,
        "multiclass": multiclass,
    }
    write_json(out / "metrics.json", metrics)
    sections = [
        ReportSection(
            "What was measured",
            [
                f"Zero-shot {cfg.mode} diagnosis of {len(findings)} findings from {cfg.query_modality} embeddings, "
                f"with the prompt set '{prompts.name}' ({prompts.source}), on split '{cfg.split}'. No classifier was "
                "trained: each study is compared with the averaged embeddings of the prompts.",
            ],
        ),
        *findings_sections(result, images),
    ]
    if multiclass is not None and "accuracy" in multiclass:
        sections.append(
            ReportSection(
                "Multi-class (top-1)",
                [f"{multiclass['rows_without_single_class']} rows without exactly one known class were not scored."],
                ["metric", "value (95% CI)"],
                [
                    ["accuracy", format_ci(multiclass["accuracy"])],
                    ["macro F1", format_ci(multiclass["macro_f1"])],
                    ["top-1 ECE", format_ci(multiclass["top1_ece"])],
                    ["majority-class accuracy (chance)", f"{multiclass['majority_class_accuracy']:.3f}"],
                ],
            )
        )
    sections += [data_section(split_rows, hygiene), provenance_section(provenance)]
    write_report(out, f"Zero-shot diagnosis: {prompts.name}", sections, cfg.report_formats)
    return headline(result, multiclass, len(test), len(set(test.patients)))


def headline(result: dict, multiclass: dict | None, n_rows: int, n_patients: int) -> dict[str, float]:
    """The flat numbers the CLI prints (the full result with every finding is in metrics.json)."""
    summary: dict[str, float] = {"n_rows": float(n_rows), "n_patients": float(n_patients)}
    entries = {f"macro_{name}": entry for name, entry in result["macro"].items()}
    if multiclass is not None and "accuracy" in multiclass:
        entries |= {f"multiclass_{name}": multiclass[name] for name in ("accuracy", "macro_f1", "top1_ece")}
    for name, entry in entries.items():
        for key in ("value", "ci_low", "ci_high"):
            value = entry[key]
            summary[name if key == "value" else f"{name}_{key}"] = float("nan") if value is None else float(value)
    return summary
