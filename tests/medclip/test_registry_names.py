"""Registries follow one naming rule (``medclip/registry.py``), checked from the source so a new one cannot drift.

A registry is a module constant named for what it holds, in the plural; inside a modality package it carries the
modality's name (``CT_READERS``, ``WSI_SLIDE_ENCODERS``), so a name read anywhere says whose registry it is; a registry
open to third-party packages (one with an entry-point group) comes with ``list_<things>(pattern=None)`` next to it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("medclip", "modalities", "recipes")
PLURAL_CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*S")


def registries() -> list[tuple[Path, str, ast.Call]]:
    """(file, constant name, ``Registry(...)`` call) for every module-level registry of the three packages."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text(), filename=str(path)).body:
                target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
                target = node.target if isinstance(node, ast.AnnAssign) else target
                value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
                if (
                    isinstance(target, ast.Name)
                    and isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Name)
                    and value.func.id == "Registry"
                ):
                    found.append((path.relative_to(ROOT), target.id, value))
    return found


def module_functions(path: Path) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_the_sources_hold_the_registries_this_test_reads():
    names = {name for _, name, _ in registries()}
    assert {"MODALITIES", "LOSSES", "RECIPES", "CT_READERS", "WSI_READERS", "ECG_READERS"} <= names


def test_registries_are_plural_constants_named_once():
    names = [name for _, name, _ in registries()]
    assert [name for name in names if not PLURAL_CONSTANT.fullmatch(name)] == []
    assert sorted({name for name in names if names.count(name) > 1}) == []


def test_registries_inside_a_modality_package_carry_its_name():
    wrong = [
        f"{path}: {name}"
        for path, name, _ in registries()
        if path.parts[0] == "modalities" and len(path.parts) > 2 and not name.startswith(path.parts[1].upper() + "_")
    ]
    assert wrong == []


def test_registries_open_to_plugins_offer_a_list_function():
    missing = [
        f"{path}: list_{name.lower()}"
        for path, name, call in registries()
        if len(call.args) > 1 or call.keywords  # an entry-point group: third-party packages register here
        if f"list_{name.lower()}" not in module_functions(path)
    ]
    assert missing == []
