"""Every crafted ECG input (``crafted_ecg.py``) has its expected outcome: no hang, no memory blow-up, no silent
garbage, no escaped library error, the right reason code."""

from __future__ import annotations

import pytest

from tests.fuzz import crafted_ecg
from tests.fuzz.crafted import assert_all_ok, run_crafted


@pytest.mark.slow
def test_crafted_ecg_inputs(tmp_path):
    results = run_crafted("tests.fuzz.crafted_ecg", tmp_path, crafted_ecg.cases)
    assert len(results) >= 15
    assert_all_ok(results)
