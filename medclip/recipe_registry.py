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

``medclip --help`` and ``medclip <command> --help`` must answer in well under a second, so the CLI describes recipes
with ``recipe_summaries``: ``COMMAND``, ``HELP`` and ``DEFAULT_CONFIG`` are read from the recipe module's source (they
are plain string constants) without importing it, and with it torch. A recipe whose constants are not literals is
imported instead, which is only slower.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from .registry import Registry

RECIPES: Registry[ModuleType] = Registry("recipe", "medclip.recipes")


def list_recipes(pattern: str | None = None) -> list[str]:
    """Names of every registered recipe (CLI command), or those matching ``pattern``."""
    return RECIPES.names(pattern)


@dataclass(frozen=True)
class RecipeSummary:
    """What the CLI shows of a recipe before running it, read without importing the recipe.

    Attributes:
        name: the registry (entry-point) name.
        command: the CLI command (the module's ``COMMAND``).
        help: its one-line help (``HELP``).
        default_config: the bundled config used without ``--config`` (``DEFAULT_CONFIG``), or None.
        source: the recipe module's file (its package's ``configs/`` holds the bundled YAMLs).
    """

    name: str
    command: str
    help: str
    default_config: str | None
    source: str


_CONSTANT = re.compile(r"^(COMMAND|HELP|DEFAULT_CONFIG)\s*=\s*(.+?)\s*$")


def _summary_from_source(name: str, value: str) -> RecipeSummary | None:
    """Read a recipe module's one-line string constants from its source; None when that is not possible (then the
    module is imported). A line scan rather than a parse of the whole module: the CLI does this for every recipe."""
    module, _, attribute = value.partition(":")
    if attribute:
        return None
    try:
        spec = importlib.util.find_spec(module.strip())
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    constants: dict[str, str | None] = {}
    for line in Path(spec.origin).read_text(encoding="utf-8").splitlines():
        match = _CONSTANT.match(line)
        if match:
            try:
                constants[match.group(1)] = ast.literal_eval(match.group(2))
            except (ValueError, SyntaxError):  # not a one-line literal: import the module instead
                return None
    command, help_text, default = constants.get("COMMAND"), constants.get("HELP"), constants.get("DEFAULT_CONFIG")
    if not isinstance(help_text, str) or not isinstance(command or "", str) or not isinstance(default or "", str):
        return None
    return RecipeSummary(name, command or name, help_text, default, spec.origin)


def _summary_of_module(name: str, recipe: ModuleType) -> RecipeSummary:
    return RecipeSummary(
        name,
        getattr(recipe, "COMMAND", name),
        getattr(recipe, "HELP", ""),
        getattr(recipe, "DEFAULT_CONFIG", None),
        recipe.__file__,
    )


def recipe_summaries() -> list[RecipeSummary]:
    """Every registered recipe's command, help and config location, importing only recipes that need it."""
    summaries = []
    for name, item in RECIPES.declared().items():
        summary = _summary_from_source(name, item) if isinstance(item, str) else None
        summaries.append(summary or _summary_of_module(name, RECIPES.get(name)))
    return summaries


def _summary(recipe: ModuleType | RecipeSummary) -> RecipeSummary:
    return recipe if isinstance(recipe, RecipeSummary) else _summary_of_module(recipe.__name__, recipe)


def recipe_config_path(recipe: ModuleType | RecipeSummary, name: str | None = None) -> Path | None:
    """Where a recipe's bundled YAML config lies (``<recipe package>/configs/<name>``)."""
    summary = _summary(recipe)
    name = name or summary.default_config
    if not name:
        return None
    return Path(summary.source).resolve().parent / "configs" / name


def config_recipe_name(path: Path) -> str | None:
    """The recipe a bundled YAML belongs to, from its first line ``# recipe: <command>``."""
    with Path(path).open() as handle:
        first = handle.readline().strip()
    prefix = "# recipe:"
    return first[len(prefix) :].strip() if first.startswith(prefix) else None


def bundled_configs(recipe: ModuleType | RecipeSummary) -> list[Path]:
    """The YAML files in the recipe package's ``configs/`` that name this recipe on their first line."""
    summary = _summary(recipe)
    folder = Path(summary.source).resolve().parent / "configs"
    return [path for path, command in _configs_in(folder) if command == summary.command]


@lru_cache(maxsize=16)
def _configs_in(folder: Path) -> tuple[tuple[Path, str | None], ...]:
    """(path, recipe) of every YAML in ``folder``, read once per process (the CLI asks for every recipe)."""
    return tuple((path, config_recipe_name(path)) for path in sorted(folder.glob("*.yaml")))
