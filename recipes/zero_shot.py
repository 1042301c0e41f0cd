"""Zero-shot diagnosis (``medclip zero-shot``): score findings from prompts, with honest statistics.

No classifier is trained. Each finding of a prompt set (``medclip/prompts/*.yaml``) is described by several positive
and negative phrasings x templates; their embeddings are averaged (prompt ensembling) and every study of the query
modality (a CT, a slide, a cell's expression profile) is scored against them:

- ``mode: binary``: per finding, softmax over [positive, negative] similarity (findings do not compete);
- ``mode: multiclass``: softmax over the findings' positive embeddings (exactly one class per row, e.g. cell types).

Metrics on the test patients (the ones pretraining held out): AUROC, AUPRC, and sensitivity / specificity / F1 at a
threshold chosen on validation patients, each with a 95% CI from resampling patients; calibration (ECE, reliability
curve); a breakdown per site when the manifest has a ``site`` column; each finding's worst false positives and false
negatives by score (1-based manifest rows). Outputs in ``out``: ``metrics.json``, ``roc.png``, ``reliability.png``,
``embedding_map.png``, ``report.html`` / ``report.md`` (whose mistakes link to thumbnails in the local-only
``out/local/thumbnails/``); ``metrics.json`` -> ``diagnostics`` holds the embedding health of the evaluated rows
(``diagnostics: false`` turns it off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import medclip
from medclip.device import resolve_device
from medclip.embedding import LoaderOptions, embed_split
from medclip.eval.clinical_plots import plot_findings
from medclip.eval.embedding_diagnostics import recipe_diagnostics
from medclip.eval.evaluation_data import check_split_name, open_evaluation_data
from medclip.eval.findings import FindingStatistics, evaluate_scores
from medclip.eval.hygiene import check_unseen_patients, evaluation_provenance
from medclip.eval.report import (
    ReportSection,
    data_section,
    findings_sections,
    multiclass_section,
    provenance_section,
    write_json,
    write_report,
)
from medclip.eval.worst_errors import errors_section, worst_errors, write_error_thumbnails
from medclip.eval.zero_shot_classifier import ZeroShotClassifier

COMMAND = "zero-shot"
HELP = "zero-shot diagnosis from YAML prompt sets: AUROC/AUPRC/F1 with patient-bootstrap CIs, calibration, report"
DEFAULT_CONFIG = "zero_shot.yaml"
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
    diagnostics: bool = True  # embedding health (gap to the prompts, uniformity, rank, sites) + embedding_map.png
    diagnostics_max_rows: int = 4096  # uniformity / effective rank on at most this many rows (0 = all)
    diagnostics_modalities: list[str] = field(default_factory=list)  # e.g. [report]: also embedded, for the gap to it
    allow_seen_patients: bool = False  # evaluate even on patients seen in pretraining (the report says so)
    report_formats: list[str] = field(default_factory=lambda: ["html", "markdown"])
    n_errors: int = 3  # worst false positives / negatives listed per finding
    thumbnails: bool = True  # draw them into out/local/thumbnails/ (local-only: patient images)
    progress: bool = True


def main(cfg: Config) -> dict[str, float]:
    statistics = FindingStatistics.of(cfg)
    statistics.check()
    test_split = check_split_name(cfg.split)
    threshold_split = (
        None if cfg.threshold_split == NO_SPLIT else check_split_name(cfg.threshold_split, "threshold_split")
    )
    model = medclip.load_model(cfg.checkpoint, resolve_device(cfg.device))
    classifier = ZeroShotClassifier(
        model, cfg.prompts, cfg.findings, cfg.mode, cfg.text_modality, cfg.temperature, cfg.batch_size
    )
    modalities = [cfg.query_modality]
    data = open_evaluation_data(model, cfg.manifest, modalities, cfg.root)
    columns = data.label_columns(classifier.findings)
    scored = [test_split] if threshold_split is None else [test_split, threshold_split]
    hygiene = check_unseen_patients(
        cfg.checkpoint, data.patients(*scored), data.manifest.key_fingerprint, cfg.allow_seen_patients
    )
    options = LoaderOptions.of(cfg)
    test_rows = data.dataset(model, modalities, test_split)
    test, test_skips = embed_split(model, test_rows, modalities, options)
    if len(test) == 0:
        raise ValueError(f"no usable rows in split {cfg.split!r} of the manifest ({test_skips.total()} skipped)")
    y_val = scores_val = None
    if threshold_split is not None and threshold_split != test_split:
        validation, _ = embed_split(model, data.dataset(model, modalities, threshold_split), modalities, options)
        y_val, scores_val = validation.labels[:, columns], classifier.scores(validation.embeddings[cfg.query_modality])
    y_test, scores_test = test.labels[:, columns], classifier.scores(test.embeddings[cfg.query_modality])
    result, multiclass = evaluate_scores(
        classifier.findings, y_test, scores_test, test.patients, test.sites, statistics, y_val, scores_val,
        multiclass=cfg.mode == "multiclass",
    )  # fmt: skip
    out = Path(cfg.out)
    diagnostics = recipe_diagnostics(cfg, test, modalities, {"prompts": classifier.positive.cpu().numpy()}, model)
    errors = worst_errors(classifier.findings, y_test, scores_test, test.row_numbers, cfg.n_errors)
    plugin = model.preprocess[cfg.query_modality].plugin
    thumbnails = (
        write_error_thumbnails(out, errors, plugin, cfg.query_modality, test_rows.row_references())
        if cfg.thumbnails
        else {}
    )
    images = plot_findings(out, classifier.findings, y_test, scores_test, result, cfg.calibration_bins)
    settings = {key: getattr(cfg, key) for key in ("split", "threshold_split", "threshold_rule", "mode")}
    settings |= {"query_modality": cfg.query_modality, "text_modality": cfg.text_modality}
    provenance = evaluation_provenance(
        COMMAND, cfg.checkpoint, data.manifest, cfg.seed, cfg.n_bootstrap, cfg.confidence, classifier.prompts.summary(),
        **settings, logit_scale=classifier.logit_scale,
    )  # fmt: skip
    split_rows = {
        cfg.split: {"rows": len(test), "patients": len(set(test.patients)), "skipped_rows": test_skips.total()}
    }
    if y_val is not None:
        split_rows[cfg.threshold_split] = {"rows": len(y_val), "patients": len(set(validation.patients))}
    write_json(
        out / "metrics.json",
        {
            "provenance": provenance,
            "hygiene": hygiene,
            "data": {"splits": split_rows, "skipped": test_skips.to_dict()},
            "findings_not_evaluated": [name for name in data.manifest.label_names if name not in classifier.findings],
            "zero_shot": result,
            "multiclass": multiclass,
            "diagnostics": diagnostics.block,
            "worst_errors": errors,
        },
    )
    measured = (
        f"Zero-shot {cfg.mode} diagnosis of {len(classifier.findings)} findings from {cfg.query_modality} embeddings, "
        f"with the prompt set '{classifier.prompts.name}' ({classifier.prompts.source}), on split '{cfg.split}'. No "
        "classifier was trained: each study is compared with the averaged embeddings of the prompts."
    )
    sections = [
        ReportSection("What was measured", [measured]),
        *findings_sections(result, images),
        *multiclass_section(multiclass),
        *diagnostics.sections,
        errors_section(errors, thumbnails),
        data_section(split_rows, hygiene),
        provenance_section(provenance),
    ]
    write_report(out, f"Zero-shot diagnosis: {classifier.prompts.name}", sections, cfg.report_formats)
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
