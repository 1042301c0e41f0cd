"""Registers the ``slow`` marker these tests use (tests over ~10 s or that spawn processes)."""

from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: a test over ~10 s or one that spawns processes")
