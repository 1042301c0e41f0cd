"""Test-wide settings: offline model hubs, a throw-away pseudonym key, small thread pools."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A fixed test key: pseudonyms are stable within the suite and no key file is written to the user's home.
os.environ.setdefault("MEDCLIP_PSEUDONYM_KEY", "medclip-test-suite-key")

import torch  # noqa: E402

torch.set_num_threads(2)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# A small, fast version of the quickstart's training setup, for tests that train.
SMALL_EXPERIMENT = [
    "modalities.expression.encoder=mlp",
    "modalities.expression.width=32",
    "modalities.report.width=32",
    "modalities.report.layers=1",
    "modalities.report.heads=2",
    "modalities.report.max_tokens=24",
    "modalities.report.vocab_size=200",
    "model.embed_dim=16",
    "train.batch_size=16",
    "train.warmup_steps=2",
    "train.log_every=1",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add contention on a shared 2-core box (20x slower under load).

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def float64_default():
    """References computed with Python floats compare tightly in float64; the global default is restored after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def pbmc_manifest(tmp_path_factory) -> Path:
    """scanpy's real pbmc68k_reduced written as .h5ad + a manifest pairing each cell with a text (quickstart data)."""
    from recipes.quickstart import Config, write_dataset

    manifest_path, _, _ = write_dataset(Config(), tmp_path_factory.mktemp("pbmc"))
    return manifest_path


@pytest.fixture
def small_experiment(pbmc_manifest, tmp_path):
    """Factory: a small PretrainConfig on the pbmc manifest, with extra dotted overrides."""
    from medclip import config
    from recipes.pretrain import Config as PretrainConfig

    def make(*overrides: str, out: Path | None = None) -> PretrainConfig:
        data = {"modalities": {"expression": {}, "report": {}}}
        base = [f"data.manifest={pbmc_manifest}", f"out={out or tmp_path / 'run'}"]
        return config.build(PretrainConfig, config.apply_overrides(data, [*SMALL_EXPERIMENT, *base, *overrides]))

    return make
