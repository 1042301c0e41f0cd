"""Dataclass configs from YAML with dotted ``key=value`` overrides and helpful errors.

A config is a tree of dataclasses. ``build(cls, data)`` turns plain dicts (from YAML) into it, checking every key:
an unknown or misspelled key raises ``ConfigError`` naming the dotted path and the closest valid key. Overrides use
dotted paths (``train.lr=3e-4``); their values are parsed as YAML scalars and converted to the field's type.
Fields typed ``dict[str, Any]`` hold free-form sections (a modality's own options, the loss weights): they are
validated later by whoever owns them (the modality's ``config_class``, the loss registry), using ``build`` too.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A config problem; the message names the dotted key."""


def _closest(name: str, valid: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else f"; valid keys: {', '.join(sorted(valid))}"


def _shown(value: Any) -> str:
    """How an offending value appears in an error: short scalars as typed, anything longer only by its kind.

    Config values can be free text (a retrieval query, a prompt) that may hold a patient's name: errors must not
    echo them.
    """
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str) and len(value) <= 24 and " " not in value:
        return repr(value)
    if isinstance(value, str):
        return f"a text of {len(value)} characters"
    return f"a {type(value).__name__}"


def _convert(value: Any, annotation: Any, path: str) -> Any:
    """Convert a YAML value to ``annotation`` (dataclass, Optional, list, dict, scalar)."""
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(annotation)
        if value is None and type(None) in arms:
            return None
        real_arms = [arm for arm in arms if arm is not type(None)]
        if len(real_arms) == 1:  # `X | None`: X's own error says what is wrong (e.g. a nested option's check)
            try:
                return _convert(value, real_arms[0], path)
            except ConfigError:
                raise
            except (TypeError, ValueError) as error:
                raise ConfigError(f"{path}: {error}") from error
        errors = []
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return _convert(value, arm, path)
            except (ConfigError, TypeError, ValueError) as error:
                errors.append(str(error))
        raise ConfigError(f"{path}: {_shown(value)} does not fit {annotation}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {annotation.__name__}, got {type(value).__name__}")
        return build(annotation, value, _path=path)
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{path}: expected a list, got {_shown(value)}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        items = [_convert(item, item_type, f"{path}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple or annotation is tuple else items
    if origin in (dict, Mapping) or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_shown(value)}")
        args = typing.get_args(annotation)
        value_type = args[1] if len(args) == 2 else Any
        return {key: _convert(item, value_type, f"{path}.{key}") for key, item in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {_shown(value)}")
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{path}: expected a number, got {_shown(value)}")
        try:
            return float(value)
        except ValueError as error:
            raise ConfigError(f"{path}: expected a number, got {_shown(value)}") from error
    if annotation is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            and not (isinstance(value, float) and value.is_integer())
        ):
            raise ConfigError(f"{path}: expected an integer, got {_shown(value)}")
        return int(value)
    if annotation is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{path}: expected text, got {_shown(value)}")
        return str(value)
    if annotation is Path:
        return Path(value)
    return value


def build(cls: type[C], data: Mapping[str, Any] | None, _path: str = "") -> C:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys with the closest valid one."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    kwargs = {}
    for key, value in data.items():
        path = f"{_path}.{key}" if _path else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}{_closest(str(key), list(fields))}")
        kwargs[key] = _convert(value, hints[key], path)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{_path or cls.__name__}: {error}") from error


def to_dict(config: Any) -> Any:
    """A dataclass tree as plain YAML-able data (Paths as strings, tuples as lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {field.name: to_dict(getattr(config, field.name)) for field in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(key): to_dict(value) for key, value in config.items()}
    if isinstance(config, list | tuple):
        return [to_dict(value) for value in config]
    if isinstance(config, Path):
        return str(config)
    return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> (["train", "lr"], 0.0003); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    stripped = raw.strip()
    try:
        value = yaml.safe_load(raw) if stripped else ""
    except yaml.YAMLError as error:
        if not stripped.startswith(("[", "{")):  # "Mass: left, 2 cm" is text, whatever YAML makes of it
            return key.split("."), raw
        raise ConfigError(f"override {text!r}: value is not valid YAML ({error})") from error
    # A list or mapping must be written as one ([a, b], {k: v}); "Mass: left lung" or "- note" stay the text typed.
    if isinstance(value, dict | list) and not stripped.startswith(("[", "{")):
        value = raw
    # YAML reads 3e-4 as a string (no dot): numbers written like that are what users mean.
    if isinstance(value, str):
        try:
            value = float(value) if any(ch in value for ch in "eE.") else value
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply dotted overrides to a plain dict (before ``build`` validates it)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (safe loader only)."""
    path = Path(path)
    try:
        with path.open() as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError as error:
        raise ConfigError(f"config file not found: {path}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = ()) -> C:
    """Read YAML ``path`` (optional), apply ``overrides`` and build ``cls``."""
    data = read_yaml(path) if path is not None else {}
    return build(cls, apply_overrides(data, overrides))


def save(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
