"""Every crafted expression input (``crafted_expression.py``) has its expected outcome: no hang, no memory blow-up,
no crash (SciPy on corrupt sparse indices), no silent garbage, the right reason code."""

from __future__ import annotations

import pytest

from tests.fuzz import crafted_expression
from tests.fuzz.crafted import assert_all_ok, run_crafted


@pytest.mark.slow
def test_crafted_expression_inputs(tmp_path):
    results = run_crafted("tests.fuzz.crafted_expression", tmp_path, crafted_expression.cases)
    assert len(results) >= 15
    assert_all_ok(results)
