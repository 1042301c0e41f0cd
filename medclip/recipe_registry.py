"""The recipe registry: every ``medclip <command>`` is a recipe module found through entry points.

A recipe module (see ``recipes/``) defines:
    COMMAND          the CLI command name ("pretrain", "quickstart", ...)
    HELP             one line for ``medclip --help``
    Config           a dataclass; YAML files and ``key=value`` overrides are validated against it
    DEFAULT_CONFIG   file name under the recipe package's ``configs/`` used when ``--config`` is not given, or None
    main(cfg)        runs the recipe and returns its metrics as ``dict[str, float]``

Bundled configs live in ``recipes/configs/`` and name their recipe on their first line (``# recipe: pretrain``), so a
new config needs no code change and the test suite validates every one against its recipe's ``Config``.

Built-in recipes register through the ``medclip.recipes`` entry-point group exactly like a third-party one, so the
CLI never imports ``recipes`` by name.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from .registry import Registry

RECIPES: Registry[ModuleType] = Registry("recipe", "medclip.recipes")


def list_recipes(pattern: str | None = None) -> list[str]:
    """Names of every registered recipe (CLI command), or those matching ``pattern``."""
    return RECIPES.names(pattern)


def recipe_config_path(recipe: ModuleType, name: str | None = None) -> Path | None:
    """Where a recipe's bundled YAML config lies (``<recipe package>/configs/<name>``)."""
    name = name or getattr(recipe, "DEFAULT_CONFIG", None)
    if not name:
        return None
    return Path(recipe.__file__).resolve().parent / "configs" / name


def config_recipe_name(path: Path) -> str | None:
    """The recipe a bundled YAML belongs to, from its first line ``# recipe: <command>``."""
    with Path(path).open() as handle:
        first = handle.readline().strip()
    prefix = "# recipe:"
    return first[len(prefix) :].strip() if first.startswith(prefix) else None


def bundled_configs(recipe: ModuleType) -> list[Path]:
    """The YAML files in the recipe package's ``configs/`` that name this recipe on their first line."""
    folder = Path(recipe.__file__).resolve().parent / "configs"
    command = getattr(recipe, "COMMAND", None)
    return [path for path in sorted(folder.glob("*.yaml")) if config_recipe_name(path) == command]
