"""Fixtures shared by the ``tests/medclip`` tests: a tiny trained checkpoint on real data."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(pbmc_manifest, tmp_path_factory) -> Path:
    """expression <-> report trained for a few steps on scanpy's real pbmc68k_reduced (the quickstart data).

    Small widths keep it to seconds; the checkpoint is a real one written by the pretraining recipe (model card,
    preprocessing state, data provenance, README.md).
    """
    from medclip import config
    from recipes.pretrain import Config, pretrain
    from tests.conftest import SMALL_EXPERIMENT

    out = tmp_path_factory.mktemp("tiny_run")
    data = {"modalities": {"expression": {}, "report": {}}}
    overrides = [*SMALL_EXPERIMENT, f"data.manifest={pbmc_manifest}", f"out={out}", "train.steps=6"]
    return pretrain(config.build(Config, config.apply_overrides(data, overrides))).checkpoint
