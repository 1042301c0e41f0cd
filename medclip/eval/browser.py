"""The retrieval browser (``browser.html``) and the local-only row references of an output folder.

Metric files carry pseudonyms and 1-based manifest row numbers only. A user who wants to *look* at a retrieved study
needs two more things, both written under ``out/local/`` (a folder whose README says it must not be shared):

- ``row_references.json``: manifest row number -> the file reference of each modality cell (paths, series folders,
  ``file.h5ad#cell``), so a hit's row number leads back to the file; inline text (reports) is never copied;
- ``browser.html``: one self-contained page (thumbnails inlined as base64 PNG data URIs): each example query
  (report text as de-identified by the report plugin, or a thumbnail) beside its top-k retrieved studies, each a card
  with a thumbnail, its row number, score and whether it is the paired study, one with the same findings, or other.

The page holds no patient id and no file path (cards are labelled by row number and study pseudonym), but it does
show patient images and report text, hence ``local/``.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import write_json

LOCAL_FOLDER = "local"
LOCAL_README = (
    "This folder is LOCAL-ONLY: it must not be shared, uploaded or attached to a publication. It maps manifest row "
    "numbers back to files (row_references.json) and shows patient images and de-identified report text "
    "(browser.html). The metric files one level up (metrics.json, query_results.json, report.html) hold pseudonyms "
    "and row numbers only."
)
MATCH_CLASSES = {"paired": "paired", "same findings": "same-findings", "other": "other"}
CARD_TEXT_CHARS = 400  # of a retrieved report: enough to judge the match, short enough for a card
COLOURS = {"paired": "#2e7d32", "same-findings": "#9ccc65", "other": "#bdbdbd"}


@dataclass
class HitCard:
    """One retrieved study: where it is in the manifest, how similar, whether it is right, and its picture."""

    rank: int
    row: int  # 1-based manifest row
    study: str  # pseudonym
    score: float
    match: str  # paired | same findings | other
    thumbnail: bytes  # PNG
    text: str | None = None  # de-identified report text, when the retrieved modality is text (no thumbnail drawn)


@dataclass
class QueryRow:
    """One query of the page: its row, what it shows (text or a picture) and its ranked hits."""

    row: int
    study: str
    findings: str
    text: str | None = None  # de-identified report text, when the query modality is text
    thumbnail: bytes | None = None  # PNG, when it is not
    hits: list[HitCard] = field(default_factory=list)


def local_folder(out: str | os.PathLike) -> Path:
    """``out/local/``, created with its README saying that nothing in it may be shared."""
    folder = Path(out) / LOCAL_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.txt").write_text(LOCAL_README + "\n", encoding="utf-8")
    return folder


def _reference_text(reference: Any) -> str | None:
    """A file reference as text (a path, or a mapping with a "path"), None for inline values such as report text."""
    if isinstance(reference, Mapping):
        if not isinstance(reference.get("path"), str | os.PathLike):
            return None
        extra = "&".join(f"{key}={value}" for key, value in sorted(reference.items()) if key != "path")
        return os.fspath(reference["path"]) + (f"#{extra}" if extra else "")
    if isinstance(reference, os.PathLike):
        return os.fspath(reference)
    return None


def write_row_references(out: str | os.PathLike, references: Mapping[int, Mapping[str, Any]]) -> Path:
    """Write ``out/local/row_references.json``: row number -> {modality: file reference}; inline text left out."""
    rows: dict[str, dict[str, str]] = {}
    for row in sorted(references):
        files = {name: text for name, ref in references[row].items() if (text := _reference_text(ref)) is not None}
        if files:
            rows[str(row)] = files
    document = {
        "README": LOCAL_README,
        "row_numbers": "1-based data rows of the manifest (row 1 is the first line after the header)",
        "rows": rows,
    }
    return write_json(local_folder(out) / "row_references.json", document)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


STYLE = """
body { font-family: sans-serif; margin: 16px; background: #fafafa; }
table.browser { border-collapse: collapse; }
tr.query-row > td { border-top: 1px solid #ccc; padding: 8px; vertical-align: top; }
td.query { width: 320px; font-size: 12px; }
td.query pre { white-space: pre-wrap; max-height: 180px; overflow: auto; background: #fff; padding: 4px; }
div.hits { display: flex; gap: 6px; }
div.hit-card { border: 4px solid #bdbdbd; background: #fff; font-size: 11px; text-align: center; padding: 2px; }
div.hit-card pre { width: 144px; height: 144px; overflow: auto; white-space: pre-wrap; text-align: left; margin: 0; }
div.hit-card img, td.query img { width: 144px; height: 144px; display: block; margin: auto; }
div.hit-card.paired { border-color: #2e7d32; }
div.hit-card.same-findings { border-color: #9ccc65; }
span.legend { display: inline-block; padding: 2px 8px; margin-right: 6px; color: #000; }
"""


def _query_cell(query: QueryRow) -> str:
    body = (
        f"<pre>{html.escape(query.text)}</pre>"
        if query.text is not None
        else f'<img alt="row {query.row}" src="{_data_uri(query.thumbnail or b"")}">'
    )
    findings = f"<div>findings: {html.escape(query.findings)}</div>" if query.findings else ""
    return f'<td class="query"><b>query: row {query.row}</b> ({html.escape(query.study)}){findings}{body}</td>'


def _hit_card(hit: HitCard) -> str:
    css = MATCH_CLASSES.get(hit.match, "other")
    return (
        f'<div class="hit-card {css}" data-row="{hit.row}" data-match="{css}">'
        + (
            f"<pre>{html.escape(hit.text[:CARD_TEXT_CHARS])}</pre>"
            if hit.text is not None
            else f'<img alt="row {hit.row}" src="{_data_uri(hit.thumbnail)}">'
        )
        + f"#{hit.rank} row {hit.row}<br>score {hit.score:.3f}<br>{html.escape(hit.match)}</div>"
    )


def render_browser(title: str, queries: Sequence[QueryRow], notes: Sequence[str] = ()) -> str:
    """The whole page as one HTML string (no external files, scripts or fonts)."""
    legend = "".join(
        f'<span class="legend" style="background:{COLOURS[css]}">{html.escape(label)}</span>'
        for label, css in MATCH_CLASSES.items()
    )
    rows = "".join(
        f'<tr class="query-row" data-row="{query.row}">{_query_cell(query)}'
        f'<td><div class="hits">{"".join(_hit_card(hit) for hit in query.hits)}</div></td></tr>'
        for query in queries
    )
    paragraphs = "".join(f"<p>{html.escape(note)}</p>" for note in notes)
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{paragraphs}<p>{legend}</p>"
        f'<table class="browser">{rows}</table></body></html>'
    )


def write_browser(out: str | os.PathLike, title: str, queries: Sequence[QueryRow], notes: Sequence[str] = ()) -> Path:
    """Write ``out/local/browser.html`` (self-contained) and return its path."""
    path = local_folder(out) / "browser.html"
    path.write_text(render_browser(title, queries, notes), encoding="utf-8")
    return path


def query_rows(
    examples: Sequence[Mapping[str, Any]],
    references: Mapping[int, Mapping[str, Any]],
    plugins: Mapping[str, Any],
    query_modality: str,
    target_modality: str,
) -> list[QueryRow]:
    """Example queries (``{"row", "query", "findings", "hits": [{"row", "study", "score", "match"}]}``) -> page rows.

    Each study is loaded with its own plugin: a text query (a report) is shown as the plugin's de-identified text,
    anything else as a thumbnail; every hit gets a thumbnail, each manifest row drawn once.
    """
    from .thumbnails import failure_reason, png_bytes, render_rows, text_tile

    target_rows = [hit["row"] for example in examples for hit in example["hits"]]
    target_references = {row: refs[target_modality] for row, refs in references.items() if target_modality in refs}
    pictures = render_rows(plugins[target_modality], target_modality, target_references, target_rows)
    texts = _texts(plugins[target_modality], target_modality, target_references, target_rows)
    result = []
    for example in examples:
        query = QueryRow(row=int(example["row"]), study=example["query"], findings=example.get("findings", ""))
        reference = references.get(query.row, {}).get(query_modality)
        loaded: Any = None
        try:
            loaded = plugins[query_modality].load(reference)[query_modality] if reference is not None else None
        except Exception as error:  # noqa: BLE001 - an unreadable query is shown as such, the page goes on
            query.thumbnail = png_bytes(text_tile(f"could not load ({failure_reason(error)})", "#ffebee"))
        if isinstance(loaded, str):
            query.text = loaded
        elif query.thumbnail is None:
            query.thumbnail = render_rows(plugins[query_modality], query_modality, {query.row: reference}, [query.row])[
                query.row
            ]
        query.hits = [
            HitCard(
                rank,
                int(hit["row"]),
                hit["study"],
                float(hit["score"]),
                hit["match"],
                pictures[int(hit["row"])],
                texts.get(int(hit["row"])),
            )
            for rank, hit in enumerate(example["hits"], start=1)
        ]
        result.append(query)
    return result


def _texts(plugin: Any, name: str, references: Mapping[int, Any], rows: Sequence[int]) -> dict[int, str]:
    """The loaded (de-identified) text of each row, when ``name`` is a text modality without a thumbnail renderer."""
    from .thumbnails import THUMBNAILS

    if name in THUMBNAILS:
        return {}
    texts = {}
    for row in dict.fromkeys(int(r) for r in rows):
        try:
            value = plugin.load(references[row])[name] if row in references else None
        except Exception:  # noqa: BLE001 - the placeholder tile already says it could not be shown
            continue
        if isinstance(value, str):
            texts[row] = value
    return texts
