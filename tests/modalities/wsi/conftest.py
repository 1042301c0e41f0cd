"""Fixtures of the WSI tests."""

from __future__ import annotations

import pytest

from modalities.wsi.slide import close_slides


@pytest.fixture(autouse=True)
def _close_slides():
    """Every test starts with no slide handle left open by the previous one (the reader caches open slides)."""
    yield
    close_slides()
