"""Every crafted whole-slide image of ``tests/fuzz/crafted_wsi.py`` has its expected outcome (issue 14)."""

from __future__ import annotations

import pytest

from tests.fuzz import crafted_wsi
from tests.fuzz.crafted import assert_all_ok, run_crafted


@pytest.mark.slow
def test_crafted_slides_are_refused_with_their_reason_or_load(tmp_path):
    results = run_crafted("tests.fuzz.crafted_wsi", tmp_path, crafted_wsi.cases)
    assert len(results) >= 25
    assert_all_ok(results)
