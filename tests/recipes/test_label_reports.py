"""``medclip label-reports`` end to end: a manifest with reports in -> the same manifest with label columns out.

Real files written in the test (CSV, Parquet through pyarrow, report .txt files, a FIFO), run through
``medclip.cli.main`` with ``--config`` and ``key=value`` overrides, and the output read back with ``read_manifest``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from medclip.cli import main
from medclip.data import read_manifest
from medclip.recipe_registry import RECIPES, recipe_config_path

SECRET = "Zebulon Quartermaine"  # stands for the identifiers a report can hold: never in logs or the summary
REPORTS = [
    f"FINDINGS: Small left pleural effusion. No pneumothorax. Dictated by {SECRET}.",
    "IMPRESSION: Possible right lower lobe pneumonia. Heart size is normal.",
    "",  # blank: no report
    "reports/p4.txt",
    "reports/missing.txt",
    "reports/pipe.txt",
    "INDICATION: Rule out pneumothorax.\nFINDINGS: Endotracheal tube in place. Lungs are clear.",
]


@pytest.fixture()
def manifest(tmp_path) -> Path:
    reports = tmp_path / "data" / "reports"
    reports.mkdir(parents=True)
    (reports / "p4.txt").write_text(f"FINDINGS: Cardiomegaly with mild pulmonary edema.\nSigned: {SECRET}\n")
    os.mkfifo(reports / "pipe.txt")
    table = pd.DataFrame(
        {
            "patient_id": [f"MRN{index:04d}" for index in range(len(REPORTS))],
            "split": ["train", "train", "", "val", "test", "test", "train"],
            "report": REPORTS,
            "label:smoker": ["1", "0", "", "", "1", "", "0"],
        }
    )
    path = tmp_path / "data" / "manifest.csv"
    table.to_csv(path, index=False)
    return path


def run(manifest: Path, out: Path, *overrides: str) -> int:
    config = recipe_config_path(RECIPES.get("label-reports"))
    return main(["label-reports", "--config", str(config), f"manifest={manifest}", f"out={out}", "progress=false",
                 *overrides])  # fmt: skip


def test_label_reports_from_the_cli_writes_label_columns_and_a_summary(manifest, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "runs" / "labelled.csv"
    assert run(manifest, out) == 0
    labelled = pd.read_csv(out, dtype=str, keep_default_na=False)
    original = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(labelled[original.columns], original)  # every input column and row unchanged
    assert list(labelled.columns[: len(original.columns)]) == list(original.columns)
    assert "label:no finding" in labelled and "label:support devices" in labelled
    column = {name: labelled[f"label:{name}"].tolist() for name in ("pleural effusion", "pneumothorax", "pneumonia")}
    assert column["pleural effusion"] == ["1", "", "", "", "", "", ""]
    assert column["pneumothorax"] == ["0", "", "", "", "", "", ""]  # row 7's indication is not a finding
    assert column["pneumonia"] == ["", "", "", "", "", "", ""]  # row 2 is uncertain: blank under U-Ignore
    assert labelled["label:cardiomegaly"].tolist() == ["", "0", "", "1", "", "", ""]  # row 4 from its .txt file
    assert labelled["label:edema"].tolist()[3] == "1"
    assert labelled["label:support devices"].tolist()[6] == "1"
    assert labelled["label:no finding"].tolist() == ["0", "", "", "0", "", "", "1"]

    summary = json.loads((tmp_path / "runs" / "labelled.summary.json").read_text())
    assert summary["rows"] == 7 and summary["rows_labelled"] == 4
    assert summary["rows_without_report"] == 1 and summary["rows_unreadable"] == 2
    assert summary["findings"]["pneumonia"] == {"positive": 0, "negative": 0, "uncertain": 1, "not_mentioned": 3}
    assert summary["findings"]["pleural effusion"]["positive"] == 1
    reasons = {(skip["row_number"], skip["reason"]) for skip in summary["skipped"]["skips"]}
    assert reasons == {(5, "missing_file"), (6, "not_regular_file")}  # the FIFO is refused, not read (no hang)

    printed = capsys.readouterr()
    everything = printed.out + printed.err + caplog.text + json.dumps(summary)
    for private in (SECRET, "MRN0001", "pleural effusion. No", "p4.txt", "missing.txt", "pipe.txt"):
        assert private not in everything
    assert json.loads(printed.out)["rows_labelled"] == 4.0
    assert "labelled 4 of 7 rows" in caplog.text and "row 6, column 'report': skipped (not_regular_file" in caplog.text


def test_the_labelled_manifest_feeds_read_manifest(manifest, tmp_path):
    out = tmp_path / "labelled.csv"
    assert run(manifest, out, "uncertain=1") == 0
    loaded = read_manifest(out, ["report"])
    assert "pneumonia" in loaded.label_names and "smoker" in loaded.label_names
    assert not loaded.summary.records  # every label cell parses: 1 / 0 / blank
    pneumonia = loaded.label_names.index("pneumonia")
    by_row = {row.row_number: row.labels[pneumonia] for row in loaded.rows}
    assert by_row[2] == 1.0  # U-Ones: the hedged pneumonia counts as present
    assert math.isnan(by_row[1]) and math.isnan(by_row[3])


def test_parquet_in_and_out(manifest, tmp_path):
    source = tmp_path / "manifest.parquet"
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    table["report"] = table["report"].replace("", None)
    table.to_parquet(source, index=False)
    (tmp_path / "reports").symlink_to(manifest.parent / "reports")  # relative paths resolve from the manifest's folder
    out = tmp_path / "labelled.parquet"
    assert run(source, out, "uncertain=0", "vocabulary=chest_xray") == 0
    labelled = pd.read_parquet(out)
    assert labelled["label:pleural effusion"].dtype == np.float64
    assert labelled["label:pneumonia"].tolist()[1] == 0.0  # U-Zeros
    assert math.isnan(labelled["label:pneumonia"].tolist()[0])
    loaded = read_manifest(out, ["report"])
    assert loaded.rows[0].labels[loaded.label_names.index("pleural effusion")] == 1.0


def test_existing_label_columns_and_outputs_are_not_overwritten_unless_asked(manifest, tmp_path, capsys):
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    table["label:pneumothorax"] = ["1"] * len(table)
    table.to_csv(manifest, index=False)
    out = tmp_path / "labelled.csv"
    assert run(manifest, out) == 2
    assert "already has label:pneumothorax; set overwrite: true" in capsys.readouterr().err
    assert not out.exists()
    assert run(manifest, out, "overwrite=true") == 0
    assert pd.read_csv(out, dtype=str, keep_default_na=False)["label:pneumothorax"].tolist()[0] == "0"
    assert run(manifest, out) == 2  # out exists now
    assert "exists; set overwrite: true" in capsys.readouterr().err


def test_a_users_vocabulary_and_a_chest_ct_vocabulary(manifest, tmp_path):
    vocabulary = tmp_path / "tubes.yaml"
    vocabulary.write_text(
        yaml.safe_dump(
            {
                "name": "tubes",
                "triggers": {"base": "default"},
                "findings": {"endotracheal tube": {"mentions": ["endotracheal tube", "ett"]}},
            }
        )
    )
    out = tmp_path / "tubes.csv"
    assert run(manifest, out, f"vocabulary={vocabulary}", "sections=[]") == 0
    assert pd.read_csv(out, dtype=str, keep_default_na=False)["label:endotracheal tube"].tolist()[6] == "1"
    ct_out = tmp_path / "ct.tsv"
    assert run(manifest, ct_out, "vocabulary=chest_ct") == 0
    ct = pd.read_csv(ct_out, sep="\t", dtype=str, keep_default_na=False)
    assert ct["label:pleural effusion"].tolist()[0] == "1" and "label:pulmonary nodule" in ct


@pytest.mark.parametrize(
    "override,message",
    [
        ("uncertain=maybe", "uncertain must be one of blank, 1, 0"),
        ("out={tmp}/labelled", "out names the labelled manifest file"),
        ("column=reprot", "no column 'reprot' (set column: to the report column); did you mean 'report'"),
        ("sections=[findings, conclusions]", "unknown section name(s) ['conclusions']"),
        ("vocabulary=chest_mri", "neither a bundled vocabulary"),
        ("max_report_mb=0", "max_report_mb must be positive"),
        ("manifest={tmp}/nowhere.csv", "does not exist"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(manifest, tmp_path, capsys, override, message):
    assert run(manifest, tmp_path / "labelled.csv", override.format(tmp=tmp_path)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "labelled.csv").exists()


def test_the_recipe_is_registered_with_its_bundled_config():
    recipe = RECIPES.get("label-reports")
    assert recipe.COMMAND == "label-reports" and recipe_config_path(recipe).name == "label_reports.yaml"
    assert recipe_config_path(recipe).read_text().startswith("# recipe: label-reports\n")
