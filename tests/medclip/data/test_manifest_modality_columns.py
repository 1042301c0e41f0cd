"""A manifest column named after a registered modality that this run does not use (a ``report`` column in a run
that reads only ``expression``) is listed as ignored, without the misleading "did you mean 'label:report'?" warning;
a misspelled column still warns with its closest valid name.

Regression test for issue 17: ``report`` was taken for a misspelled ``label:report`` finding.
"""

from __future__ import annotations

import logging

import pandas as pd

from medclip.data import Pseudonymizer, read_manifest

KEY = b"0123456789abcdef0123456789abcdef"


def _write(tmp_path, columns: dict[str, list[str]]):
    path = tmp_path / "manifest.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_an_unused_modality_column_is_ignored_without_a_label_hint(tmp_path, caplog):
    path = _write(
        tmp_path,
        {
            "patient_id": ["P1", "P2"],
            "report": ["Small effusion.", "Clear lungs."],
            "expression": ["cells.h5ad#row=0", "cells.h5ad#row=1"],
            "label:effusion": ["1", "0"],
        },
    )
    with caplog.at_level(logging.INFO, logger="medclip.data"):
        manifest = read_manifest(path, ["expression"], pseudonymizer=Pseudonymizer(KEY))
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert not any("'report'" in message for message in warnings), warnings
    assert "label:report" not in caplog.text
    assert manifest.summary.ignored_columns == {"report": None}  # still listed: nothing is ignored silently
    info = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    assert any("'report'" in message and "modality" in message for message in info)


def test_a_misspelled_column_still_warns_with_its_closest_name(tmp_path, caplog):
    path = _write(tmp_path, {"patient_id": ["P1"], "expression": ["cells.h5ad#row=0"], "lable:edema": ["1"]})
    with caplog.at_level(logging.INFO, logger="medclip.data"):
        manifest = read_manifest(path, ["expression"], pseudonymizer=Pseudonymizer(KEY))
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert any("'lable:edema'" in message and "did you mean 'label:edema'" in message for message in warnings)
    assert manifest.summary.ignored_columns == {"lable:edema": "label:edema"}
