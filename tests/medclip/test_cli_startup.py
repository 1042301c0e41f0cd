"""`medclip --help`, `medclip <recipe> --help` and `medclip recipes list` import neither torch nor any recipe.

Torch's import alone takes seconds, so the import graph is what keeps the help under a second; it is asserted here
rather than a wall-clock time, which a loaded machine would make flaky (``benchmarks/cli_startup.py`` measures it).
Each command runs in a fresh interpreter: this test process has imported torch already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medclip.recipe_registry import RECIPES, recipe_summaries

HEAVY = ("torch", "numpy", "pandas", "scipy", "transformers", "monai", "timm", "matplotlib", "sklearn", "modalities")
PROBE = """
import contextlib, io, json, sys
from medclip.cli import main
results = {}
for argv in ([["--help"], ["pretrain", "--help"], ["zero-shot", "--help"], ["recipes", "list"], ["export", "--help"]]):
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in HEAVY or name.startswith("recipes."))
    results[" ".join(argv)] = {"code": code, "loaded": loaded, "output": output.getvalue()}
print(json.dumps(results))
"""


@pytest.mark.slow
def test_help_and_recipe_listing_import_no_heavy_module():
    finished = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}"], capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr
    results = json.loads(finished.stdout.strip().splitlines()[-1])
    for command, result in results.items():
        assert result["code"] in (0, None), command
        assert result["loaded"] == [], f"`medclip {command}` imported {result['loaded'][:5]}"
    assert "pretrain" in results["--help"]["output"] and "export" in results["--help"]["output"]
    assert "ct_report_pretrain.yaml" in results["pretrain --help"]["output"]
    listing = results["recipes list"]["output"]
    for name in ("ct_report_pretrain.yaml", "ecg_report_pretrain.yaml", "spatial_pretrain.yaml", "zero_shot.yaml"):
        assert name in listing


def test_summaries_read_from_source_match_the_imported_recipes():
    """What the CLI shows without importing a recipe is what the recipe module says once imported."""
    summaries = recipe_summaries()
    assert sorted(summary.name for summary in summaries) == RECIPES.names()
    for summary in summaries:
        recipe = RECIPES.get(summary.name)
        assert summary.command == getattr(recipe, "COMMAND", summary.name)
        assert summary.help == recipe.HELP
        assert summary.default_config == getattr(recipe, "DEFAULT_CONFIG", None)
