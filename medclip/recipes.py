"""The recipe registry: every ``medclip <command>`` is a recipe module found through entry points.

A recipe module (see ``recipes/``) defines:
    COMMAND          the CLI command name ("pretrain", "quickstart", ...)
    HELP             one line for ``medclip --help``
    Config           a dataclass; YAML files and ``key=value`` overrides are validated against it
    DEFAULT_CONFIG   file name under the recipe package's ``configs/`` used when ``--config`` is not given, or None
    CONFIGS          every bundled config file this recipe runs (DEFAULT_CONFIG included), so each is tested
    main(cfg)        runs the recipe and returns its metrics as ``dict[str, float]``

Built-in recipes register through the ``medclip.recipes`` entry-point group exactly like a third-party one, so the
CLI never imports ``recipes`` by name.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from .registry import Registry

RECIPES: Registry[ModuleType] = Registry("recipe", "medclip.recipes")


def recipe_config_path(recipe: ModuleType, name: str | None = None) -> Path | None:
    """Where a recipe's bundled YAML config lies (``<recipe package>/configs/<name>``)."""
    name = name or getattr(recipe, "DEFAULT_CONFIG", None)
    if not name:
        return None
    return Path(recipe.__file__).resolve().parent / "configs" / name


def bundled_configs(recipe: ModuleType) -> list[Path]:
    """The bundled YAML files a recipe declares in ``CONFIGS`` (its ``DEFAULT_CONFIG`` at least)."""
    names = list(getattr(recipe, "CONFIGS", ()))
    default = getattr(recipe, "DEFAULT_CONFIG", None)
    if default and default not in names:
        names.insert(0, default)
    return [path for name in names if (path := recipe_config_path(recipe, name)) is not None]
