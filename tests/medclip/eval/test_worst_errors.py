"""Worst false positives / negatives per finding: chosen by score, reported by manifest row, linked to thumbnails."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclip.eval.worst_errors import worst_errors
from recipes.zero_shot import Config, main


def test_the_highest_scored_negatives_and_lowest_scored_positives_are_listed():
    labels = np.array([[0], [0], [1], [1], [np.nan], [0]])
    scores = np.array([[0.9], [0.2], [0.1], [0.8], [0.99], [0.7]])
    rows = np.array([11, 12, 13, 14, 15, 16])
    errors = worst_errors(["effusion"], labels, scores, rows, count=2)["effusion"]
    assert [e["row"] for e in errors["false_positives"]] == [11, 16]  # row 15 is unknown: never a mistake
    assert [e["row"] for e in errors["false_negatives"]] == [13, 14]
    assert errors["false_negatives"][0]["score"] == 0.1


@pytest.mark.slow
def test_zero_shot_report_links_each_findings_worst_mistakes_to_thumbnails(tiny_checkpoint, pbmc_manifest, tmp_path):
    out = tmp_path / "zs"
    cfg = Config(
        checkpoint=str(tiny_checkpoint),
        manifest=str(pbmc_manifest),
        out=str(out),
        n_bootstrap=5,
        n_errors=2,
        device="cpu",
        progress=False,
        report_formats=["html"],
    )
    main(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    table = pd.read_csv(pbmc_manifest, dtype=str, keep_default_na=False)
    errors = metrics["worst_errors"]
    assert set(errors) == set(metrics["zero_shot"]["findings"])
    for finding, kinds in errors.items():
        for kind, truth in (("false_positives", "0"), ("false_negatives", "1")):
            assert len(kinds[kind]) <= 2  # fewer when the split holds fewer (rare cell types have no positive)
            for entry in kinds[kind]:
                assert table.iloc[entry["row"] - 1][f"label:{finding}"] == truth  # the row really is that mistake
    report = (out / "report.html").read_text()
    links = re.findall(r"<a href='(local/thumbnails/row-(\d+)\.png)'>row (\d+)</a>", report)
    listed = {entry["row"] for kinds in errors.values() for entries in kinds.values() for entry in entries}
    assert len(listed) >= len(errors) and {int(row) for _, row, _ in links} == listed
    for href, row, text in links:
        assert row == text
        with Image.open(out / href) as picture:  # the link opens a real picture
            assert picture.size[0] > 100 and np.asarray(picture.convert("L")).std() > 5
    assert str(pbmc_manifest.parent) not in report and "cell-0" not in report
    assert "must not be shared" in (out / "local" / "README.txt").read_text()
