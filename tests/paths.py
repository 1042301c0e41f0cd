"""Where things are, for tests in any folder of the tree: the repository root and the bundled test data."""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
TEST_DATA = REPOSITORY / "tests" / "data"
