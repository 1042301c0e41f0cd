"""Issue 16's bad inputs and more for the image plugin: each is refused with its reason code (or loads, for the
good controls), in a child process under a memory limit: no hang, no crash, no gigabyte allocation."""

from __future__ import annotations

import pytest

from tests.fuzz import crafted_image
from tests.fuzz.crafted import assert_all_ok, run_crafted


@pytest.mark.slow
def test_crafted_image_inputs_are_refused_with_reasons(tmp_path):
    results = run_crafted("tests.fuzz.crafted_image", tmp_path, crafted_image.cases)
    assert len(results) >= 20
    assert_all_ok(results)
    assert max(result.peak_mb for result in results if result.peak_mb == result.peak_mb) < 256
