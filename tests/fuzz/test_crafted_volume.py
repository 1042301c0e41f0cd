"""Every crafted CT / OCT input (``tests/fuzz/crafted_volume.py``) is handled: refused with its reason code or loaded,
with no hang, no memory over budget, no silent garbage and no escaped library error (issue 14)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.fuzz import crafted_volume
from tests.fuzz.crafted import LOADS, assert_all_ok, run_crafted


@pytest.mark.slow
def test_every_crafted_volume_input_is_handled(tmp_path):
    results = run_crafted("tests.fuzz.crafted_volume", tmp_path, crafted_volume.cases)
    assert len(results) >= 40
    assert_all_ok(results)
    outcomes = Counter(result.detail for result in results)
    assert outcomes["loaded"] == sum(LOADS in case.expect for case in crafted_volume.cases(tmp_path))
    for reason in ("not_regular_file", "too_large", "non_finite", "implausible_values", "complex_data"):
        assert outcomes[reason] >= 3, f"too few inputs refused as {reason}: {dict(outcomes)}"
