"""Pretraining on a manifest with bad rows: the run goes on, and the summary counts what was skipped and why."""

from __future__ import annotations

import json

import pandas as pd

from recipes.pretrain import pretrain


def test_bad_rows_are_skipped_counted_and_never_quoted(pbmc_manifest, small_experiment, tmp_path, capsys):
    table = pd.read_csv(pbmc_manifest, dtype=str, keep_default_na=False)
    table.loc[0, "expression"] = "Smith_John_scan.h5ad#row=0"  # missing file (its name holds an identifier)
    table.loc[1, ["expression", "report"]] = ["", ""]  # no modality at all
    table.loc[2, "report"] = "reports/missing_report.txt"  # a report file that does not exist
    table.loc[3, "label:CD34+"] = "maybe"  # not a label value
    table.loc[4, "expression"] = "pbmc68k_reduced.h5ad#row=99999"  # no such cell: fails at load time, not ingest
    table["scanner"] = "x"  # unknown column: ignored, and said so
    manifest = tmp_path / "manifest.csv"
    table.to_csv(manifest, index=False)

    result = pretrain(
        small_experiment("train.steps=3", f"data.manifest={manifest}", f"data.root={pbmc_manifest.parent}")
    )
    summary = result.summary
    assert summary["counts"]["missing_file"] == 2
    assert summary["counts"]["no_modality"] == 1
    assert summary["counts"]["bad_label"] == 1
    assert [entry["column"] for entry in summary["ignored_columns"]] == ["scanner"]
    assert (result.checkpoint / "model.safetensors").is_file()

    written = (tmp_path / "run" / "data_summary.json").read_text()
    printed = capsys.readouterr()
    for text in (written, printed.out, printed.err):
        assert "Smith" not in text and "missing_report" not in text
    rows = {entry["row_number"] for entry in json.loads(written)["skips"]}
    assert {1, 2, 3, 4} <= rows
