"""Every crafted report input (``crafted_report.py``) has its expected outcome: special files refused without
blocking, sizes limited, near-maximal adversarial reports loaded within their time budget."""

from __future__ import annotations

import pytest

from tests.fuzz import crafted_report
from tests.fuzz.crafted import assert_all_ok, run_crafted


@pytest.mark.slow
def test_crafted_report_inputs(tmp_path):
    results = run_crafted("tests.fuzz.crafted_report", tmp_path, crafted_report.cases)
    assert len(results) >= 15
    assert_all_ok(results)
