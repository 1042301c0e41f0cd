"""The crafted-input harness classifies outcomes, survives a hanging reader and continues with the next case."""

from __future__ import annotations

from tests.fuzz import crafted_selftest
from tests.fuzz.crafted import run_crafted


def test_harness_classifies_and_survives_a_hang(tmp_path):
    results = {r.name: r for r in run_crafted("tests.fuzz.crafted_selftest", tmp_path, crafted_selftest.cases)}
    assert results["report_good_file"].outcome == "ok"
    assert results["report_inline"].outcome == "ok"
    # The report reader opens a FIFO before the fix of issue 14 (a hang) and refuses it after: either way the harness
    # reports it and the next case still runs in a fresh child.
    assert results["report_fifo_cell"].outcome in ("ok", "hang")
    assert results["report_after_fifo"].outcome == "ok"
