"""Linear and few-shot probes on frozen embeddings (``medclip probe``), optionally fine-tuning the encoder.

How much diagnostic information do the embeddings hold, and how many labelled patients does it take to use it? A
logistic-regression probe (scikit-learn) is fitted on frozen embeddings of the training patients, at several
fractions of them (1% / 10% / 100% by default, several seeds each, subsampled by patient), and scored like zero-shot:
AUROC, AUPRC, sensitivity / specificity / F1 at a threshold chosen on validation patients, ECE, each with a
patient-bootstrap 95% CI, per finding and macro. ``finetune: true`` also trains encoder + linear head end to end on
all training patients (the checkpoint itself is never modified).

``mode: binary`` fits one probe per finding (findings are independent); ``mode: multiclass`` one softmax probe over
the findings (one class per row). Outputs in ``out``: ``metrics.json``, ``few_shot.png``, ``roc.png``,
``reliability.png`` (of the full-data probe, first seed), ``report.html`` / ``report.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import medclip
from medclip.config import ConfigError
from medclip.data import ManifestDataset
from medclip.device import resolve_device
from medclip.embedding import EmbeddedRows, LoaderOptions, embed_split
from medclip.eval.clinical_plots import plot_few_shot, plot_findings
from medclip.eval.embedding_diagnostics import recipe_diagnostics
from medclip.eval.evaluation_data import EvaluationData, check_split_name, open_evaluation_data
from medclip.eval.few_shot import fit_probe_probabilities, sample_patients
from medclip.eval.findings import choose_thresholds, evaluate_findings, evaluate_multiclass, single_class_rows
from medclip.eval.hygiene import check_unseen_patients, evaluation_provenance
from medclip.eval.regression_evaluation import probe_targets, target_columns
from medclip.eval.report import (
    ReportSection,
    data_section,
    findings_sections,
    format_ci,
    provenance_section,
    write_json,
    write_report,
)
from medclip.train.finetune import finetune

COMMAND = "probe"
HELP = "linear / few-shot probes (1%/10%/100% of patients, several seeds) on frozen embeddings, optional fine-tuning"
DEFAULT_CONFIG = "probe.yaml"
MODES = ("binary", "multiclass")


@dataclass
class Config:
    checkpoint: str = "quickstart_out/checkpoint"
    manifest: str = "quickstart_out/data/manifest.csv"
    root: str = ""
    out: str = "runs/probe"
    modality: str = "expression"  # whose frozen embeddings are probed
    findings: list[str] = field(default_factory=list)  # label:<finding> columns to predict; empty = all of them
    targets: list[str] = field(default_factory=list)  # target:<name> columns for ridge probes; empty = all of them
    ridge_alpha: float = 0.0  # ridge penalty of the regression probes; 0 = chosen on threshold_split (or by CV)
    mode: str = "multiclass"  # binary (a probe per finding) | multiclass (one class per row)
    train_split: str = "train"  # patients the probe is fitted on
    threshold_split: str = "val"  # patients the operating thresholds are chosen on
    split: str = "test"  # evaluated patients
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])  # of training patients
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # subsamples per fraction
    C: float = 0.0  # inverse regularisation; 0 = chosen by cross-validation on the training rows
    max_iter: int = 1000
    threshold_rule: str = "youden"
    n_bootstrap: int = 1000
    confidence: float = 0.95
    calibration_bins: int = 10
    min_site_rows: int = 20
    finetune: bool = False  # also fine-tune encoder + linear head on all training patients
    finetune_steps: int = 200
    finetune_lr: float = 1.0e-4
    finetune_batch_size: int = 32
    batch_size: int = 64
    num_workers: int = 0
    worker_kind: str = "process"  # process | thread (threads load cached volumes several times faster; docs/ct.md)
    device: str = "auto"
    seed: int = 0  # bootstrap seed (subsampling uses `seeds`)
    diagnostics: bool = True  # embedding health of the evaluated rows (uniformity, rank, sites) + embedding_map.png
    diagnostics_max_rows: int = 4096  # uniformity / effective rank on at most this many rows (0 = all)
    diagnostics_modalities: list[str] = field(default_factory=list)  # e.g. [report]: also embedded, for the gap to it
    allow_seen_patients: bool = False
    report_formats: list[str] = field(default_factory=lambda: ["html", "markdown"])
    progress: bool = True


def probe_probabilities(
    train: EmbeddedRows, predict: list[EmbeddedRows], y_columns: list[int], cfg: Config, keep: np.ndarray, seed: int
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """(n, K) probabilities of each finding for each array in ``predict``, from probes fitted on ``train[keep]``."""
    x = train.embeddings[cfg.modality][keep]
    y = train.labels[keep][:, y_columns]
    targets = [rows.embeddings[cfg.modality] for rows in predict]
    outputs = [np.full((len(rows), len(y_columns)), np.nan) for rows in predict]
    if cfg.mode == "multiclass":
        usable = single_class_rows(y)
        probabilities, record = fit_probe_probabilities(
            x[usable], np.argmax(np.nan_to_num(y[usable]), axis=1), targets, len(y_columns), cfg.C, seed, cfg.max_iter
        )
        return probabilities or outputs, {"probe": record}
    records = {}
    for k, name in enumerate(cfg.findings):
        known = ~np.isnan(y[:, k])
        probabilities, records[name] = fit_probe_probabilities(
            x[known], y[known, k].astype(int), targets, 2, cfg.C, seed, cfg.max_iter
        )
        for output, probability in zip(outputs, probabilities or [], strict=False):
            output[:, k] = probability[:, 1]
    return outputs, records


def evaluate_probabilities(
    cfg: Config, test: EmbeddedRows, y_test, scores_test, y_val, scores_val
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Findings (and multi-class) metrics of one probe; findings the probe could not score are left NaN."""
    statistics = {
        "n_boot": cfg.n_bootstrap,
        "seed": cfg.seed,
        "alpha": 1 - cfg.confidence,
        "n_bins": cfg.calibration_bins,
    }
    fitted = ~np.isnan(scores_test).any(axis=0)  # (K,) findings with a probe
    scores_test = np.nan_to_num(scores_test, nan=0.0)
    thresholds, sources = choose_thresholds(
        y_val, np.nan_to_num(scores_val, nan=0.0), len(cfg.findings), cfg.threshold_rule
    )
    y_scored = np.where(fitted[None, :], y_test, np.nan)  # a finding without a probe has no metrics
    has_sites = any(site is not None for site in test.sites)
    result = evaluate_findings(
        cfg.findings,
        y_scored,
        scores_test,
        test.patients,
        thresholds,
        sources,
        sites=test.sites if has_sites else None,
        min_site_rows=cfg.min_site_rows,
        **statistics,
    )
    multiclass = None
    if cfg.mode == "multiclass" and fitted.all():
        multiclass = evaluate_multiclass(y_test, scores_test, test.patients, **statistics)
    return result, multiclass


def main(cfg: Config) -> dict[str, float]:
    if cfg.mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if not cfg.fractions or not cfg.seeds:
        raise ConfigError("fractions and seeds must each name at least one value")
    splits_used = {
        "train_split": check_split_name(cfg.train_split, "train_split"),
        "threshold_split": check_split_name(cfg.threshold_split, "threshold_split"),
        "split": check_split_name(cfg.split),
    }
    if len(set(splits_used.values())) < 3:
        raise ConfigError(f"train_split, threshold_split and split must be three different splits, got {splits_used}")
    out = Path(cfg.out)
    model = medclip.load_model(cfg.checkpoint, resolve_device(cfg.device))
    data = open_evaluation_data(model, cfg.manifest, [cfg.modality], cfg.root)
    manifest = data.manifest
    cfg = dataclasses.replace(cfg, findings=list(cfg.findings) or list(manifest.label_names))
    targets = target_columns(manifest.target_names, cfg.targets)
    if not cfg.findings and not targets:
        raise ConfigError("the manifest has no label:<finding> or target:<name> columns to probe")
    if cfg.finetune and not cfg.findings:
        raise ConfigError("finetune: true trains a classification head and needs label:<finding> columns")
    columns = data.label_columns(cfg.findings)
    evaluated = data.patients(splits_used["threshold_split"], splits_used["split"])
    hygiene = check_unseen_patients(cfg.checkpoint, evaluated, manifest.key_fingerprint, cfg.allow_seen_patients)
    modalities = [cfg.modality]
    embedded = {
        key: embed_split(model, data.dataset(model, modalities, split), modalities, LoaderOptions.of(cfg))
        for key, split in splits_used.items()
    }
    train, val, test = (embedded[key][0] for key in ("train_split", "threshold_split", "split"))
    if len(test) == 0 or len(train) == 0:
        raise ValueError(f"no usable rows: {len(train)} training and {len(test)} evaluated rows")
    y_test, y_val = test.labels[:, columns], val.labels[:, columns]

    runs, summary, sections = [], {}, []
    if cfg.findings:
        runs, figures = classification_probes(cfg, train, val, test, columns, out)
        summary = few_shot_summary(runs)
    finetuned = run_finetune(cfg, model, data, columns, y_val, y_test, val, test) if cfg.finetune else None
    regression = None
    if targets:
        names = [manifest.target_names[k] for k in targets]
        regression, regression_sections = probe_targets(
            names, targets, cfg.modality, train, val, test, out, cfg.ridge_alpha or None, cfg.n_bootstrap, cfg.seed,
            cfg.confidence,
        )  # fmt: skip
    diagnostics = recipe_diagnostics(cfg, test, modalities, model=model)

    provenance = evaluation_provenance(
        COMMAND,
        cfg.checkpoint,
        manifest,
        cfg.seed,
        cfg.n_bootstrap,
        cfg.confidence,
        modality=cfg.modality,
        mode=cfg.mode,
        fractions=cfg.fractions,
        seeds=cfg.seeds,
        C=cfg.C,
        threshold_rule=cfg.threshold_rule,
        targets=[manifest.target_names[k] for k in targets],
        ridge_alpha=cfg.ridge_alpha,
        **{key: getattr(cfg, key) for key in splits_used},
    )
    split_rows = {
        getattr(cfg, key): {"rows": len(rows), "patients": len(set(rows.patients)), "skipped_rows": skips.total()}
        for key, (rows, skips) in embedded.items()
    }
    metrics = {
        "provenance": provenance,
        "hygiene": hygiene,
        "data": {"splits": split_rows},
        "few_shot": summary,
        "runs": runs,
        "finetune": finetuned,
        "regression": regression,
        "diagnostics": diagnostics.block,
    }
    write_json(out / "metrics.json", metrics)
    headline: dict[str, float] = {}
    if cfg.findings:
        full = next(run for run in runs if run["fraction"] == max(cfg.fractions) and run["seed"] == cfg.seeds[0])
        sections += classification_sections(cfg, summary, full, figures, finetuned)
        headline |= classification_headline(summary, full, finetuned)
    if regression is not None:
        sections += regression_sections
        for name, entry in regression["targets"].items():
            for metric in ("r2", "mae"):
                value = (entry.get(metric) or {}).get("value")
                headline[f"{name} {metric}"] = float("nan") if value is None else value
    sections += [*diagnostics.sections, data_section(split_rows, hygiene), provenance_section(provenance)]
    write_report(out, f"Probe: {cfg.modality} embeddings", sections, cfg.report_formats)
    return headline


def classification_probes(
    cfg: Config, train: EmbeddedRows, val: EmbeddedRows, test: EmbeddedRows, columns: list[int], out: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    """Logistic probes at every fraction x seed, scored on ``test``; ``few_shot.png`` and the full probe's figures."""
    y_test, y_val = test.labels[:, columns], val.labels[:, columns]
    runs, curves, figures = [], {}, []
    for fraction in sorted(cfg.fractions):
        # every seed draws the same patients at 100%, and the solver is deterministic: one fit says it all
        for seed in cfg.seeds if fraction < 1.0 else cfg.seeds[:1]:
            keep = sample_patients(train.patients, fraction, seed)
            (scores_val, scores_test), records = probe_probabilities(train, [val, test], columns, cfg, keep, seed)
            result, multiclass = evaluate_probabilities(cfg, test, y_test, scores_test, y_val, scores_val)
            runs.append(
                {
                    "fraction": fraction,
                    "seed": seed,
                    "n_train_patients": int(len(np.unique(train.patients[keep]))),
                    "n_train_rows": int(keep.sum()),
                    "fits": records,
                    "findings": result,
                    "multiclass": multiclass,
                }
            )
            curves.setdefault("linear probe", {}).setdefault(fraction, []).append(result["macro"]["auroc"]["value"])
            if fraction == max(cfg.fractions) and seed == cfg.seeds[0]:
                figures = plot_findings(
                    out, cfg.findings, y_test, np.nan_to_num(scores_test), result, cfg.calibration_bins
                )
    plot_few_shot(
        {
            name: {f: [np.nan if v is None else v for v in values] for f, values in by.items()}
            for name, by in curves.items()
        },
        out / "few_shot.png",
    )
    return runs, figures


def classification_sections(
    cfg: Config, summary: dict, full: dict, figures: list[str], finetuned: dict | None
) -> list[ReportSection]:
    """The few-shot table, the full-data probe's findings and the fine-tuning line of the report."""
    few_shot_rows = [
        [
            fraction,
            f"{entry['n_train_patients_mean']:.0f}",
            f"{entry['macro_auroc_mean']:.3f}",
            f"{entry['macro_auroc_min']:.3f}-{entry['macro_auroc_max']:.3f}",
        ]
        for fraction, entry in summary.items()
    ]
    sections = [
        ReportSection(
            "What was measured",
            [
                f"Logistic-regression probes on frozen {cfg.modality} embeddings predicting {len(cfg.findings)} "
                f"findings "
                f"({cfg.mode}). Few-shot: fractions of the training patients, seeds {cfg.seeds}. The tables below "
                f"describe the probe on {max(cfg.fractions):g} of training patients (seed {cfg.seeds[0]})."
            ],
            ["fraction of training patients", "patients", "macro AUROC (mean over seeds)", "range over seeds"],
            few_shot_rows,
            ["few_shot.png"],
        ),
        *findings_sections(full["findings"], figures),
    ]
    if finetuned is not None:
        sections.append(
            ReportSection(
                "Fine-tuned encoder + head",
                [
                    f"{cfg.finetune_steps} steps on all training "
                    f"patients; macro AUROC {format_ci(finetuned['findings']['macro']['auroc'])}."
                ],
            )
        )
    return sections


def classification_headline(summary: dict, full: dict, finetuned: dict | None) -> dict[str, float]:
    """The flat classification numbers the CLI prints."""
    headline = {
        f"fraction_{fraction}_macro_auroc_mean": entry["macro_auroc_mean"] for fraction, entry in summary.items()
    }
    for name, entry in full["findings"]["macro"].items():
        headline[f"macro_{name}"] = float("nan") if entry["value"] is None else entry["value"]
    if finetuned is not None:
        headline["finetune_macro_auroc"] = finetuned["findings"]["macro"]["auroc"]["value"]
    return headline


def few_shot_summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per fraction: macro AUROC mean / min / max over seeds (NaN-free seeds only) and mean patient count."""
    summary = {}
    for fraction in sorted({run["fraction"] for run in runs}):
        chosen = [run for run in runs if run["fraction"] == fraction]
        values = np.array([np.nan if (v := r["findings"]["macro"]["auroc"]["value"]) is None else v for r in chosen])
        defined = values[~np.isnan(values)]
        summary[f"{fraction:g}"] = {
            "n_train_patients_mean": float(np.mean([run["n_train_patients"] for run in chosen])),
            "macro_auroc_mean": float(defined.mean()) if defined.size else float("nan"),
            "macro_auroc_min": float(defined.min()) if defined.size else float("nan"),
            "macro_auroc_max": float(defined.max()) if defined.size else float("nan"),
            "seeds_without_a_probe": int(np.isnan(values).sum()),
        }
    return summary


def run_finetune(
    cfg: Config, model: torch.nn.Module, data: EvaluationData, columns, y_val, y_test, val, test
) -> dict[str, Any]:
    """Fine-tune encoder + head on all training patients, then score validation and test like the probes."""
    plugin = model.preprocess.modalities[cfg.modality]
    dataset = ManifestDataset(
        data.manifest,
        {cfg.modality: plugin},
        split=cfg.train_split,
        splits=data.splits,
        transforms={cfg.modality: plugin.transforms(train=True)},
    )
    device = next(model.parameters()).device
    classifier, record = finetune(
        model,
        dataset,
        cfg.modality,
        columns,
        cfg.mode,
        cfg.finetune_steps,
        cfg.finetune_lr,
        cfg.finetune_batch_size,
        cfg.seeds[0],
        str(device),
        cfg.progress,
    )
    tuned = classifier.model  # the fine-tuned copy, with the same preprocessing
    scores = []
    for split in (cfg.threshold_split, cfg.split):
        dataset = data.dataset(tuned, [cfg.modality], split)
        rows, _ = embed_split(tuned, dataset, [cfg.modality], LoaderOptions.of(cfg))
        with torch.no_grad():
            logits = classifier.head(torch.from_numpy(rows.embeddings[cfg.modality]).to(device)).cpu()
        scores.append((logits.softmax(-1) if cfg.mode == "multiclass" else logits.sigmoid()).numpy())
    result, multiclass = evaluate_probabilities(cfg, test, y_test, scores[1], y_val, scores[0])
    return {"training": record, "findings": result, "multiclass": multiclass}
