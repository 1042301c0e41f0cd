"""The retrieval browser: row numbers that lead back to the manifest, a local-only page, and no identifiers leaking.

``medclip retrieve`` runs once per module on the tiny pbmc checkpoint (real .h5ad cells + inline reports); the page it
writes is parsed with ``html.parser`` and, where a Chromium binary exists, rendered by a real headless browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclip.data.pseudonym import Pseudonymizer
from recipes.retrieval import Config, main

N_QUERIES = 2
TOP_K = 6


class BrowserPage(HTMLParser):
    """Collects the query rows and hit cards of browser.html (their data- attributes), and every image source."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "tr" and "query-row" in classes:
            self.queries.append({"row": int(attributes["data-row"]), "hits": []})
        elif tag == "div" and "hit-card" in classes:
            self.queries[-1]["hits"].append({"row": int(attributes["data-row"]), "match": attributes["data-match"]})
        elif tag == "img":
            self.images.append(attributes["src"] or "")


def parse_page(text: str) -> BrowserPage:
    page = BrowserPage()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def retrieval_run(tiny_checkpoint, pbmc_manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "rt"
    cfg = Config(
        checkpoint=str(tiny_checkpoint),
        manifest=str(pbmc_manifest),
        out=str(out),
        n_bootstrap=10,
        n_examples=N_QUERIES,
        top_k=TOP_K,
        query_text="a CD19+ B cell.",
        device="cpu",
        progress=False,
        report_formats=["html"],
    )
    main(cfg)
    return out


def test_every_query_has_k_hit_cards_and_the_paired_study_is_marked(retrieval_run):
    page = parse_page((retrieval_run / "local" / "browser.html").read_text())
    metrics = json.loads((retrieval_run / "metrics.json").read_text())
    assert [query["row"] for query in page.queries] == [example["row"] for example in metrics["examples"]]
    assert len(page.queries) == N_QUERIES
    for query in page.queries:
        assert len(query["hits"]) == TOP_K
        for hit in query["hits"]:
            assert (hit["match"] == "paired") == (hit["row"] == query["row"])  # the true partner, and only it
    # self-contained: every picture is inlined (nothing to lose when the page is mailed or moved)
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)


@pytest.mark.slow
def test_paired_hit_is_marked_when_it_is_retrieved(tiny_checkpoint, pbmc_manifest, tmp_path):
    """With k = every evaluated study the partner is always on the page, so the paired mark must appear per query."""
    out = tmp_path / "all"
    cfg = Config(
        checkpoint=str(tiny_checkpoint),
        manifest=str(pbmc_manifest),
        out=str(out),
        n_bootstrap=2,
        n_examples=1,
        top_k=1000,
        device="cpu",
        progress=False,
        report_formats=[],
    )
    main(cfg)
    page = parse_page((out / "local" / "browser.html").read_text())
    evaluated = json.loads((out / "metrics.json").read_text())["data"]["evaluated_pairs"]
    (query,) = page.queries
    assert len(query["hits"]) == evaluated
    assert [hit["row"] for hit in query["hits"] if hit["match"] == "paired"] == [query["row"]]


def test_row_numbers_lead_back_to_the_right_manifest_rows(retrieval_run, pbmc_manifest):
    table = pd.read_csv(pbmc_manifest, dtype=str, keep_default_na=False)
    pseudonymizer = Pseudonymizer.from_environment()
    label_columns = [column for column in table.columns if column.startswith("label:")]
    metrics = json.loads((retrieval_run / "metrics.json").read_text())
    for example in metrics["examples"]:
        manifest_row = table.iloc[example["row"] - 1]  # row numbers are 1-based data rows
        positive = [column.removeprefix("label:") for column in label_columns if manifest_row[column] == "1"]
        assert example["findings"] == ", ".join(positive)
    hits = json.loads((retrieval_run / "query_results.json").read_text())["hits"]
    assert len(hits) == TOP_K
    for hit in hits:
        assert hit["patient"] == pseudonymizer.pseudonym(table.iloc[hit["row"] - 1]["patient_id"], "patient")
    references = json.loads((retrieval_run / "local" / "row_references.json").read_text())
    assert "must not be shared" in references["README"]
    shown = {hit["row"] for example in metrics["examples"] for hit in example["hits"]} | {h["row"] for h in hits}
    for row in shown:
        cell = table.iloc[row - 1]["expression"]  # "pbmc68k_reduced.h5ad#row=K"
        expected = os.fspath(Path(pbmc_manifest).parent / cell.split("#")[0]) + "#" + cell.split("#")[1]
        assert references["rows"][str(row)]["expression"] == expected
        assert "report" not in references["rows"][str(row)]  # inline report text is never copied


def test_no_patient_id_or_file_path_in_the_page_or_the_metric_files(retrieval_run, pbmc_manifest):
    table = pd.read_csv(pbmc_manifest, dtype=str, keep_default_na=False)
    folder = str(Path(pbmc_manifest).parent)
    for path in ("local/browser.html", "metrics.json", "query_results.json", "report.html"):
        text = (retrieval_run / path).read_text()
        assert folder not in text and ".h5ad" not in text, path
        assert not any(patient in text for patient in table["patient_id"]), path
    for path in ("metrics.json", "query_results.json", "report.html"):  # shared files: no report text either
        assert "profiled by single cell" not in (retrieval_run / path).read_text()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if found := shutil.which(name):
            return found
    return None


@pytest.mark.slow
@pytest.mark.skipif(
    _chromium() is None, reason="no chromium binary (Debian: apt-get install -y chromium) to render browser.html"
)
def test_the_page_renders_in_headless_chromium(retrieval_run, tmp_path):
    page = (retrieval_run / "local" / "browser.html").resolve()
    screenshot = tmp_path / "browser.png"
    common = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    subprocess.run(
        [*common, f"--screenshot={screenshot}", "--window-size=1400,900", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    if artefacts := os.environ.get("MEDCLIP_TEST_ARTEFACTS"):
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artefacts) / "retrieval_browser.png")
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (900, 1400)
    assert pixels.std() > 10  # not a blank page: text, thumbnails and coloured borders were drawn
    green = (np.abs(pixels - [0x9C, 0xCC, 0x65]).sum(axis=2) < 30) | (
        np.abs(pixels - [0x2E, 0x7D, 0x32]).sum(axis=2) < 30
    )
    assert green.any()  # the legend (and any paired / same-findings card) is coloured
    rendered = parse_page(dom)
    assert len(rendered.queries) == N_QUERIES
    assert [len(query["hits"]) for query in rendered.queries] == [TOP_K] * N_QUERIES


def test_report_text_is_escaped_and_cards_follow_the_query_order():
    from medclip.eval.browser import HitCard, QueryRow, render_browser
    from medclip.eval.thumbnails import png_bytes, text_tile

    png = png_bytes(text_tile("no image for this modality"))
    queries = [
        QueryRow(
            7,
            "s-1",
            "effusion",
            text="<script>alert(1)</script> effusion & more",
            hits=[HitCard(1, 7, "s-1", 0.9, "paired", png)],
        ),
        QueryRow(3, "s-2", "", text="clear", hits=[HitCard(1, 9, "s-3", 0.5, "same findings", png)]),
    ]
    text = render_browser("t", queries)
    assert "<script>" not in text and "&lt;script&gt;" in text and "&amp; more" in text
    page = parse_page(text)
    assert [(q["row"], [(h["row"], h["match"]) for h in q["hits"]]) for q in page.queries] == [
        (7, [(7, "paired")]),
        (3, [(9, "same-findings")]),
    ]


def test_retrieved_reports_are_shown_as_de_identified_text():
    """ct -> report retrieval: a text hit has no picture to draw; its card shows the report as the plugin loads it."""
    from medclip.eval.browser import query_rows, render_browser
    from medclip.factory import build_modalities

    report = build_modalities({"report": {}})["report"]
    examples = [
        {"row": 1, "query": "s-a", "findings": "", "hits": [{"row": 2, "study": "s-b", "score": 0.5, "match": "other"}]}
    ]
    references = {
        1: {"report": "Small left effusion."},
        2: {"report": "Seen by Dr. John Smith on 03/04/2021. Normal chest."},
    }
    (query,) = query_rows(examples, references, {"report": report}, "report", "report")
    (hit,) = query.hits
    assert query.text == report.load("Small left effusion.")["report"]
    assert "Normal chest." in hit.text and "John Smith" not in hit.text and "03/04/2021" not in hit.text
    text = render_browser("t", [query])
    assert "John Smith" not in text and text.count("<pre>") == 2
