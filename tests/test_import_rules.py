"""The arrows allowed between packages (docs/architecture.md), checked on the source with ``ast``.

Every import statement counts, including the lazy ones inside functions: a lazy import still ties the two packages
together. Each test lists the offending ``file:line -> module`` so a failure says what to move.

Layers, bottom to top:
- core: every module of ``medclip`` except the ones below (types, registry, config, factory, checkpoint, preprocess,
  embedding, device, errors, model, data/, losses/, nn/, weights/, ...);
- applications of the core: ``medclip.train``, ``medclip.eval``, ``medclip.export``: each imports the core, never
  another application;
- the front door: ``medclip/__init__.py`` (the public API, lazy re-exports) and ``medclip/cli.py``;
- ``modalities``: plugins, importing the core (and ``medclip.eval`` for modality-specific evaluation helpers);
- ``recipes``: compositions at the top; nothing in ``medclip`` or ``modalities`` imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPLICATIONS = ("medclip.train", "medclip.eval", "medclip.export")
FRONT_DOOR = ("medclip", "medclip.cli")
PROJECT_PACKAGES = ("medclip", "modalities", "recipes")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(package: str) -> list[tuple[str, str, str]]:
    """(importing module, imported module, ``file:line``) for every import in ``package`` that names medclip,
    modalities or recipes."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        importer = module_name(path)
        # the package a relative import starts from: the module itself for an __init__.py, else its parent
        here = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                targets = [f"{module}.{alias.name}" for alias in node.names] if not node.module else [module]
            else:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            found += [(importer, target, where) for target in targets if target.split(".")[0] in PROJECT_PACKAGES]
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def application_of(module: str) -> str | None:
    return next((app for app in APPLICATIONS if within(module, app)), None)


def is_core(module: str) -> bool:
    return within(module, "medclip") and application_of(module) is None and module not in FRONT_DOOR


def test_the_rules_read_the_imports_they_check():
    arrows = {(importer, target) for importer, target, _ in imports("medclip")}
    assert ("medclip.train.state", "medclip.checkpoint") in arrows  # a relative import two levels up
    assert ("medclip.eval.clinical_plots", "medclip.eval.plots") in arrows  # a relative import one level up
    assert ("medclip", "medclip.types") in arrows  # ``from . import types`` in the package's __init__.py
    assert is_core("medclip.checkpoint") and not is_core("medclip.train.trainer") and not is_core("medclip.cli")


def test_the_core_never_imports_modalities_or_recipes():
    wrong = [
        f"{where} -> {target}"
        for _, target, where in imports("medclip")
        if within(target, "modalities") or within(target, "recipes")
    ]
    assert wrong == []


def test_the_core_never_imports_training_evaluation_export_or_the_cli():
    wrong = [
        f"{where} -> {target}"
        for importer, target, where in imports("medclip")
        if is_core(importer) and (application_of(target) is not None or within(target, "medclip.cli"))
    ]
    assert wrong == []


def test_training_evaluation_and_export_never_import_each_other():
    wrong = [
        f"{where} -> {target}"
        for importer, target, where in imports("medclip")
        if application_of(importer) and application_of(target) and application_of(importer) != application_of(target)
    ]
    assert wrong == []


def test_modalities_import_the_core_not_training_export_cli_or_recipes():
    forbidden = ("medclip.train", "medclip.export", "medclip.cli", "recipes")
    wrong = [
        f"{where} -> {target}"
        for _, target, where in imports("modalities")
        if any(within(target, package) for package in forbidden)
    ]
    assert wrong == []


def test_no_module_imports_another_modules_private_names():
    wrong = []
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ImportFrom):
                    private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                    wrong += [f"{path.relative_to(ROOT)}:{node.lineno} imports {name}" for name in private]
    assert wrong == []
