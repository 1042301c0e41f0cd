"""Config loading: YAML + dotted overrides into dataclasses, with errors naming the key and the closest valid one."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from medclip import config
from medclip.config import ConfigError
from recipes.pretrain import Config as PretrainConfig


@dataclass
class Inner:
    rate: float = 0.5
    names: list[str] = field(default_factory=list)


@dataclass
class Outer:
    steps: int = 10
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    path: str | None = None


def test_yaml_and_overrides_build_typed_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 3\ninner:\n  rate: 0.25\n  names: [a, b]\n")
    loaded = config.load(Outer, path, ["inner.rate=3e-4", "flag=true", "path=null"])
    assert loaded == Outer(steps=3, flag=True, inner=Inner(rate=3e-4, names=["a", "b"]), path=None)
    assert isinstance(loaded.inner.rate, float)


def test_unknown_key_names_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'inner.rat'; did you mean 'rate'\?"):
        config.load(Outer, None, ["inner.rat=1"])
    with pytest.raises(ConfigError, match=r"'train.lrr'.*'lr'"):
        config.load(PretrainConfig, None, ["train.lrr=1"])


def test_wrong_types_are_errors():
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        config.load(Outer, None, ["steps=abc"])
    with pytest.raises(ConfigError, match="flag: expected true/false"):
        config.load(Outer, None, ["flag=3"])
    with pytest.raises(ConfigError, match="must look like"):
        config.load(Outer, None, ["steps"])


def test_errors_never_echo_free_text():
    @dataclass
    class Query:
        text: str = ""
        top_k: int = 5

    typed = "Patient: Zyxwortha Quennel, MRN 48213377"  # YAML would read a mapping: the text typed is kept
    assert config.load(Query, None, [f"text={typed}"]).text == typed
    with pytest.raises(ConfigError) as raised:
        config.load(Query, None, ["top_k=Patient: Zyxwortha Quennel"])
    assert "Zyxwortha" not in str(raised.value) and "a text of 26 characters" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        config.load(Query, None, ["top_k=call Mr Quennel back"])
    assert "Quennel" not in str(raised.value) and "a text of 20 characters" in str(raised.value)


def test_round_trip_through_yaml(tmp_path):
    original = config.load(PretrainConfig, None, ["train.steps=7", "modalities.report.width=32", "loss.siglip=0.5"])
    config.save(original, tmp_path / "saved.yaml")
    again = config.load(PretrainConfig, tmp_path / "saved.yaml")
    assert again == original
    assert again.train.betas == (0.9, 0.98)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(Outer, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.load(Outer, bad)
