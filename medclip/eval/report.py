"""Run outputs: ``metrics.json`` (strict JSON, NaN as null) and a one-page report a clinician can read.

The report states what was measured on whom (patients, rows, split), each number with its 95% confidence interval,
how thresholds were chosen, and the provenance (checkpoint, manifest, prompt set, seed), in Markdown and/or a single
self-contained HTML page next to the PNGs it shows.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPORT_FORMATS = ("html", "markdown")


def jsonable(value: Any) -> Any:
    """Plain JSON data: numpy scalars/arrays to Python, NaN/inf to None (JSON has no NaN), paths to strings."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return str(value)
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write strict JSON atomically (a half-written metric file is worse than none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(jsonable(data), indent=1, allow_nan=False))
    os.replace(temporary, path)
    return path


def format_ci(entry: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``{"value", "ci_low", "ci_high"}`` -> "0.912 (0.861-0.950)"; "n/a" where undefined."""
    if not entry or entry.get("value") is None:
        return "n/a"
    text = f"{entry['value']:.{digits}f}"
    if entry.get("ci_low") is not None and entry.get("ci_high") is not None:
        text += f" ({entry['ci_low']:.{digits}f}-{entry['ci_high']:.{digits}f})"
    return text


@dataclass(frozen=True)
class Link:
    """A table cell that links to a file of the output folder (e.g. a thumbnail under ``local/``)."""

    text: str
    href: str


def _markdown_cell(cell: str | Link) -> str:
    if isinstance(cell, Link):
        return f"[{cell.text.replace('|', '/')}]({cell.href})"
    return cell.replace("|", "\\|")


def _html_cell(cell: str | Link) -> str:
    if isinstance(cell, Link):
        return f"<a href='{html.escape(cell.href)}'>{html.escape(cell.text)}</a>"
    return html.escape(cell)


@dataclass
class ReportSection:
    """One block of the report: a heading, short paragraphs, an optional table and images (file names in --out)."""

    heading: str
    paragraphs: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str | Link]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def provenance_section(provenance: Mapping[str, Any]) -> ReportSection:
    """The provenance as a two-column table (nested values as compact JSON)."""
    rows = []
    for key, value in provenance.items():
        shown = value if isinstance(value, str | int | float) or value is None else json.dumps(jsonable(value))
        rows.append([key, str(shown)])
    return ReportSection("Provenance", ["Everything needed to reproduce these numbers."], ["item", "value"], rows)


def _markdown(title: str, sections: Sequence[ReportSection]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.heading}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.header:
            lines.append("| " + " | ".join(section.header) + " |")
            lines.append("|" + "---|" * len(section.header))
            lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in section.rows]
            lines.append("")
        lines += [f"![{image}]({image})" for image in section.images]
        if section.images:
            lines.append("")
    return "\n".join(lines)


def _html(title: str, sections: Sequence[ReportSection]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:0.25em 0.6em;"
        "font-size:0.9em;text-align:left}th{background:#f3f3f3}img{max-width:48%;margin:0.3em}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts += [f"<p>{html.escape(paragraph)}</p>" for paragraph in section.paragraphs]
        if section.header:
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in section.header) + "</tr>")
            for row in section.rows:
                parts.append("<tr>" + "".join(f"<td>{_html_cell(cell)}</td>" for cell in row) + "</tr>")
            parts.append("</table>")
        parts += [f"<img src='{html.escape(image)}' alt='{html.escape(image)}'>" for image in section.images]
    parts.append("</body></html>")
    return "\n".join(parts)


RENDERERS = {"html": ("report.html", _html), "markdown": ("report.md", _markdown)}


def write_report(
    out: str | os.PathLike, title: str, sections: Sequence[ReportSection], formats: Sequence[str] = ("html",)
) -> list[Path]:
    """Write the report in each of ``formats`` ("html" -> report.html, "markdown" -> report.md) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in formats:
        if name not in RENDERERS:
            raise ValueError(f"unknown report format {name!r}; use {', '.join(REPORT_FORMATS)}")
        file_name, render = RENDERERS[name]
        (out / file_name).write_text(render(title, sections))
        written.append(out / file_name)
    return written


FINDING_COLUMNS = ("auroc", "auprc", "sensitivity", "specificity", "f1", "ece")


def findings_sections(result: Mapping[str, Any], images: Sequence[str] = ()) -> list[ReportSection]:
    """Report sections for an ``evaluate_findings`` result: macro summary, one row per finding, sites."""
    header = ["finding", "positives / negatives", *[name.upper() for name in FINDING_COLUMNS], "threshold"]
    macro = result["macro"]
    sections = [
        ReportSection(
            "Summary (macro average over findings, 95% CI)",
            [
                f"{result['n_rows']} rows of {result['n_patients']} patients. Confidence intervals resample "
                "patients, not rows. Sensitivity, specificity and F1 are read at thresholds chosen on validation "
                "patients (see each finding's threshold source), never on the test patients themselves.",
            ],
            ["metric", "value (95% CI)"],
            [[name.upper(), format_ci(macro[name])] for name in FINDING_COLUMNS],
        )
    ]
    rows = []
    for name, entry in result["findings"].items():
        rows.append(
            [
                name,
                f"{entry['n_positive']} / {entry['n_negative']}",
                *[format_ci(entry[metric]) for metric in FINDING_COLUMNS],
                f"{entry['threshold']:.3f} ({entry['threshold_source']})",
            ]
        )
    sections.append(ReportSection("Per finding", [], header, rows, list(images)))
    by_site = result.get("by_site") or {}
    if by_site:
        site_rows = []
        for site, entry in by_site.items():
            if "macro" not in entry:
                site_rows.append([site, str(entry["n_rows"]), entry.get("skipped", ""), ""])
                continue
            site_rows.append(
                [site, str(entry["n_rows"]), format_ci(entry["macro"]["auroc"]), format_ci(entry["macro"]["auprc"])]
            )
        sections.append(
            ReportSection(
                "By site",
                [
                    "The same thresholds applied within each site; a large gap between sites means the model travels "
                    "poorly."
                ],
                ["site", "rows", "macro AUROC", "macro AUPRC"],
                site_rows,
            )
        )
    return sections


def multiclass_section(multiclass: Mapping[str, Any] | None) -> list[ReportSection]:
    """The top-1 section of a multi-class evaluation (empty when there is none to show)."""
    if multiclass is None or "accuracy" not in multiclass:
        return []
    return [
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
    ]


def data_section(split_rows: Mapping[str, Mapping[str, Any]], hygiene: Mapping[str, Any]) -> ReportSection:
    """Who was evaluated: rows and patients per split, skipped rows, the pretraining-overlap check."""
    rows = [
        [split, str(entry.get("rows", "")), str(entry.get("patients", "")), str(entry.get("skipped_rows", 0))]
        for split, entry in split_rows.items()
    ]
    if hygiene.get("checked"):
        check = f"Checked against the checkpoint's pretraining patients: {hygiene['seen_patients']} seen."
    else:
        check = f"Overlap with pretraining patients NOT checked: {hygiene.get('note', '')}."
    if hygiene.get("allow_seen_patients") and hygiene.get("seen_patients"):
        check += " allow_seen_patients was set: these numbers include patients the model was trained on."
    return ReportSection("Data", [check], ["split", "rows", "patients", "skipped rows (manifest-wide)"], rows)
