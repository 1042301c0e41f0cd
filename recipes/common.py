"""What the recipes share that the library does not own: the prompt sets bundled with the recipes.

Everything else a recipe needs is a library call: ``medclip.load_model``, ``medclip.eval.evaluation_data`` (the
manifest split as pretraining split it), ``medclip.embedding`` (one way to embed), ``medclip.eval.hygiene``.
"""

from __future__ import annotations

from pathlib import Path

from medclip.config import ConfigError

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


def resolve_prompt_file(name: str) -> Path:
    """A prompt-set file: a path as given, else a bundled set in ``recipes/prompts/`` (with or without .yaml)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for candidate in (PROMPTS_DIR / name, PROMPTS_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    bundled = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))) or "none"
    raise ConfigError(f"prompt set {name!r} is neither a file nor a bundled set (bundled: {bundled})")
