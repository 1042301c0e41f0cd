"""The registry: names, duplicates, helpful errors, and real entry-point plugins (good and broken).

Entry points are exercised as a third-party package would ship them: a real package on disk plus a ``*.dist-info``
folder (METADATA + entry_points.txt) on ``sys.path``, which ``importlib.metadata`` discovers. A fresh
``Registry("modality", "medclip.modalities")`` then finds the built-ins, the good plugin and the broken ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from medclip.registry import Registry, RegistryError
from medclip.types import EncoderOutput, Modality

GOOD_PLUGIN = "acme_spectrum"
MISSING_MODULE_PLUGIN = "acme_missing"  # points at a module that is not installed
RAISING_PLUGIN = "acme_raising"  # its module exists but fails while importing (a missing optional dependency)

# A complete third-party modality: 1-D spectra stored as .npy files, a one-layer encoder.
GOOD_PLUGIN_SOURCE = '''
"""acme's medclip plugin: 1-D spectra (e.g. Raman) as a modality."""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medclip.types import EncoderOutput, Modality, ModalityConfig


@dataclass
class SpectrumConfig(ModalityConfig):
    encoder: str = "linear"
    width: int = 8
    bins: int = 16  # points per spectrum


class SpectrumEncoder(nn.Module):
    def __init__(self, cfg: SpectrumConfig) -> None:
        super().__init__()
        self.output_dim = cfg.width
        self.project = nn.Sequential(nn.Linear(cfg.bins, cfg.width), nn.GELU())

    def forward(self, spectra: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(pooled=self.project(spectra))  # (B, width)


class SpectrumModality(Modality):
    name = "acme_spectrum"
    config_class = SpectrumConfig

    def load(self, ref):
        return {self.name: np.load(ref).astype(np.float32), f"{self.name}_meta": {}}

    def transforms(self, train):
        def to_tensor(sample):
            if self.name not in sample:
                return sample
            return {**sample, self.name: torch.as_tensor(sample[self.name])}

        return to_tensor

    def build_encoder(self):
        return SpectrumEncoder(self.config)

    def collate(self, samples):
        rows = [sample.get(self.name) for sample in samples]
        spectra = torch.stack([row if row is not None else torch.zeros(self.config.bins) for row in rows])  # (B, bins)
        return {self.name: spectra, f"{self.name}_mask": torch.tensor([row is not None for row in rows])}

    def synthetic(self, n, seed=0):
        rng = np.random.default_rng(seed)
        return [{self.name: rng.random(self.config.bins, dtype=np.float32), f"{self.name}_meta": {}} for _ in range(n)]
'''


def write_distribution(site: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Install a distribution the way pip lays one out: its modules plus ``name-1.0.dist-info``."""
    for module, source in modules.items():
        package = site / module
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(textwrap.dedent(source))
    dist_info = site / f"{name}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n")
    lines = "".join(f"{plugin} = {target}\n" for plugin, target in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[medclip.modalities]\n{lines}")


def write_good_distribution(site: Path) -> None:
    write_distribution(
        site,
        "acme_medclip_spectrum",
        {GOOD_PLUGIN: "acme_medclip_spectrum:SpectrumModality"},
        {"acme_medclip_spectrum": GOOD_PLUGIN_SOURCE},
    )


def write_broken_distribution(site: Path) -> None:
    write_distribution(
        site,
        "acme_medclip_broken",
        {
            MISSING_MODULE_PLUGIN: "acme_module_that_is_not_installed:Modality",
            RAISING_PLUGIN: "acme_medclip_broken:RamanModality",
        },
        {"acme_medclip_broken": 'raise ImportError("acme_medclip_broken needs the optional package pyraman")\n'},
    )


@pytest.fixture()
def plugin_site(tmp_path, monkeypatch) -> Iterator[Path]:
    """A site directory holding one good and one broken plugin distribution, on sys.path for this test only."""
    site = tmp_path / "site"
    site.mkdir()
    write_good_distribution(site)
    write_broken_distribution(site)
    monkeypatch.syspath_prepend(str(site))
    yield site
    for module in ("acme_medclip_spectrum", "acme_medclip_broken"):
        sys.modules.pop(module, None)  # the next test imports its own fresh copy from its own tmp_path


def load_entry_points(registry: Registry) -> tuple[list[str], list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = registry.names()
    return names, caught


# --- basics -------------------------------------------------------------------------------------------------------


def test_register_with_decorator_or_call_and_get():
    registry: Registry[type] = Registry("widget")

    @registry.register("sphere")
    class Sphere:
        pass

    cube = registry.register("cube", type("Cube", (), {}))
    assert registry.get("sphere") is Sphere
    assert registry.get("cube") is cube
    assert registry.names() == ["cube", "sphere"]
    assert list(registry) == ["cube", "sphere"]
    assert registry.items() == [("cube", cube), ("sphere", Sphere)]
    assert "sphere" in registry and "cone" not in registry


def test_duplicate_name_is_an_error_unless_overwriting():
    registry: Registry[object] = Registry("widget")
    first, second = object(), object()
    registry.register("sphere", first)
    registry.register("sphere", first)  # registering the same object again is harmless (e.g. a module re-import)
    with pytest.raises(RegistryError, match="widget 'sphere' is already registered"):
        registry.register("sphere", second)
    assert registry.get("sphere") is first
    registry.register("sphere", second, overwrite=True)
    assert registry.get("sphere") is second


def test_unknown_name_suggests_the_closest_and_lists_all():
    registry: Registry[object] = Registry("widget")
    for name in ("sphere", "cube"):
        registry.register(name, object())
    with pytest.raises(RegistryError) as raised:
        registry.get("sphere_")
    message = str(raised.value)
    assert "unknown widget 'sphere_'" in message
    assert "did you mean 'sphere'?" in message
    assert "Available: cube, sphere" in message
    assert isinstance(raised.value, KeyError)  # callers may catch it as a KeyError
    with pytest.raises(RegistryError, match="Available: none"):
        Registry("gadget").get("anything")


# --- real entry points ----------------------------------------------------------------------------------------------


def test_third_party_plugin_loads_through_its_entry_point_and_works(plugin_site, tmp_path):
    registry: Registry[type[Modality]] = Registry("modality", "medclip.modalities")
    names, _ = load_entry_points(registry)
    assert {GOOD_PLUGIN, "report", "expression"} <= set(names)
    cls = registry.get(GOOD_PLUGIN)
    assert cls.__module__ == "acme_medclip_spectrum"
    assert Path(sys.modules[cls.__module__].__file__).is_relative_to(plugin_site)

    plugin = cls(cls.config_class(bins=16, width=8))
    spectrum_file = tmp_path / "spectrum.npy"
    np.save(spectrum_file, np.linspace(0.0, 1.0, 16))
    loaded = plugin.load(spectrum_file)
    transform = plugin.transforms(train=True)
    batch = plugin.collate([transform(loaded), transform({"report": "no spectrum for this study"})])
    assert batch[GOOD_PLUGIN].shape == (2, 16)
    assert batch[f"{GOOD_PLUGIN}_mask"].tolist() == [True, False]
    torch.testing.assert_close(batch[GOOD_PLUGIN][0], torch.linspace(0.0, 1.0, 16))
    output = plugin.build_encoder()(batch[GOOD_PLUGIN])
    assert isinstance(output, EncoderOutput)
    assert output.pooled.shape == (2, 8)


def test_broken_plugins_warn_by_name_and_leave_other_lookups_working(plugin_site):
    registry: Registry[type[Modality]] = Registry("modality", "medclip.modalities")
    names, caught = load_entry_points(registry)
    runtime_warnings = [str(warning.message) for warning in caught if issubclass(warning.category, RuntimeWarning)]
    messages = [message for message in runtime_warnings if "acme" in message]  # other installed plugins may warn too
    assert len(messages) == 2, runtime_warnings
    missing = next(message for message in messages if repr(MISSING_MODULE_PLUGIN) in message)
    assert "ModuleNotFoundError" in missing and "acme_module_that_is_not_installed" in missing
    raising = next(message for message in messages if repr(RAISING_PLUGIN) in message)
    assert "needs the optional package pyraman" in raising

    assert MISSING_MODULE_PLUGIN not in names and RAISING_PLUGIN not in names
    assert registry.get(GOOD_PLUGIN).__name__ == "SpectrumModality"
    assert registry.get("report").__name__ == "ReportModality"
    _, again = load_entry_points(registry)
    assert not again  # entry points are scanned once: no repeated warnings on later lookups


def test_asking_for_a_broken_plugin_reports_why_it_failed_to_load(plugin_site):
    registry: Registry[type[Modality]] = Registry("modality", "medclip.modalities")
    load_entry_points(registry)
    with pytest.raises(RegistryError) as raised:
        registry.get(MISSING_MODULE_PLUGIN)
    message = str(raised.value)
    assert f"unknown modality {MISSING_MODULE_PLUGIN!r}" in message
    assert "failed to load: ModuleNotFoundError" in message
    with pytest.raises(RegistryError, match=r"failed to load: ImportError: .*pyraman"):
        registry.get(RAISING_PLUGIN)


def test_import_medclip_survives_a_broken_plugin_on_pythonpath(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    write_broken_distribution(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    code = "import json, medclip; print(json.dumps(medclip.list_modalities()))"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    names = json.loads(completed.stdout.strip().splitlines()[-1])
    assert {"report", "expression"} <= set(names)
    assert MISSING_MODULE_PLUGIN not in names
    assert "RuntimeWarning" in completed.stderr
    assert repr(MISSING_MODULE_PLUGIN) in completed.stderr and repr(RAISING_PLUGIN) in completed.stderr
