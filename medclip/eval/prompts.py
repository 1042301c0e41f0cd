"""Prompt sets: the text a zero-shot model is asked with, kept in YAML files instead of code.

Hard-coded prompts make zero-shot numbers impossible to compare or reproduce; a prompt set is data, versioned and
hashed into every metric file. Each finding has several positive and negative phrasings, expanded through several
templates; their embeddings are averaged (prompt ensembling), which makes the score depend less on one wording::

    name: chest_ct_findings
    templates: ["a chest CT showing {}.", "{}."]     # "{}" takes each phrasing
    negative_templates: ["a chest CT with {}."]      # optional; defaults to templates
    findings:
      pleural effusion:                              # matches the manifest column label:pleural effusion
        positive: ["pleural effusion", "fluid in the pleural space"]
        negative: ["no pleural effusion", "clear pleural spaces"]   # needed for binary mode only
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BUNDLED_PROMPT_SETS = Path(__file__).resolve().parent.parent / "prompts"  # medclip/prompts/*.yaml


class PromptSetError(ValueError):
    """A prompt file that cannot be used; the message names the file and the key."""


@dataclass
class FindingPrompts:
    """The phrasings of one finding (before templates)."""

    positive: list[str]
    negative: list[str] = field(default_factory=list)


@dataclass
class PromptSet:
    """A named, hashed set of prompts per finding.

    Attributes:
        name: the set's name (recorded in metric files).
        templates: format strings with one ``{}``, applied to positive phrasings.
        negative_templates: the same for negative phrasings.
        findings: finding name -> its phrasings, in file order.
        sha256: hash of the file's bytes, so a metric file names the exact prompts.
        source: the file name it was read from.
    """

    name: str
    templates: list[str]
    negative_templates: list[str]
    findings: dict[str, FindingPrompts]
    sha256: str = ""
    source: str = ""

    def positive_prompts(self, finding: str) -> list[str]:
        """Every positive prompt of ``finding``: phrasings x templates."""
        return [template.format(text) for text in self.findings[finding].positive for template in self.templates]

    def negative_prompts(self, finding: str) -> list[str]:
        """Every negative prompt of ``finding``; empty when the file gives no negative phrasings."""
        phrasings = self.findings[finding].negative
        return [template.format(text) for text in phrasings for template in self.negative_templates]

    def require_negatives(self, findings: Sequence[str]) -> None:
        """Binary mode contrasts positive with negative prompts: every finding needs negatives."""
        lacking = [name for name in findings if not self.findings[name].negative]
        if lacking:
            raise PromptSetError(
                f"prompt set {self.source or self.name}: findings {lacking} have no `negative` phrasings, which "
                "binary mode needs (add them, or use mode: multiclass)"
            )

    def summary(self) -> dict[str, Any]:
        """What a metric file records about the prompts."""
        return {
            "name": self.name,
            "file": self.source,
            "sha256": self.sha256,
            "findings": list(self.findings),
            "templates": len(self.templates),
        }


def _text_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item.strip() for item in value):
        raise PromptSetError(f"{where}: expected a non-empty list of non-empty strings")
    return [item.strip() for item in value]


def _templates(value: Any, where: str) -> list[str]:
    templates = _text_list(value, where)
    for template in templates:
        if template.count("{}") != 1 or "{" in template.replace("{}", ""):
            raise PromptSetError(f"{where}: template {template!r} must hold exactly one '{{}}' and no other braces")
    return templates


def read_prompt_set(path: str | os.PathLike) -> PromptSet:
    """Read and validate a prompt-set YAML file (see the module docstring for its layout)."""
    path = Path(path)
    if not path.is_file():
        raise PromptSetError(f"prompt set file {path} does not exist")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise PromptSetError(f"{path.name}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise PromptSetError(f"{path.name}: expected a mapping with name, templates and findings")
    unknown = sorted(set(data) - {"name", "description", "templates", "negative_templates", "findings"})
    if unknown:
        raise PromptSetError(f"{path.name}: unknown keys {unknown}")
    templates = _templates(data.get("templates", ["{}"]), f"{path.name}: templates")
    negative_templates = _templates(data.get("negative_templates", templates), f"{path.name}: negative_templates")
    findings_data = data.get("findings")
    if not isinstance(findings_data, dict) or not findings_data:
        raise PromptSetError(f"{path.name}: `findings` must map each finding to its positive/negative phrasings")
    findings = {}
    for finding, phrasings in findings_data.items():
        where = f"{path.name}: findings.{finding}"
        if not isinstance(phrasings, dict) or set(phrasings) - {"positive", "negative"}:
            raise PromptSetError(f"{where}: expected a mapping with `positive` (and optionally `negative`) lists")
        negative = phrasings.get("negative")
        findings[str(finding)] = FindingPrompts(
            positive=_text_list(phrasings.get("positive"), f"{where}.positive"),
            negative=_text_list(negative, f"{where}.negative") if negative is not None else [],
        )
    return PromptSet(
        name=str(data.get("name") or path.stem),
        templates=templates,
        negative_templates=negative_templates,
        findings=findings,
        sha256=hashlib.sha256(raw).hexdigest(),
        source=path.name,
    )


def bundled_prompt_sets() -> list[str]:
    """Names of the prompt sets shipped with medclip (``medclip/prompts/*.yaml``)."""
    return sorted(path.stem for path in BUNDLED_PROMPT_SETS.glob("*.yaml"))


def resolve_prompt_set(name: str | os.PathLike) -> Path:
    """A prompt-set file: a path as given, else a bundled set by name (with or without .yaml)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for candidate in (BUNDLED_PROMPT_SETS / str(name), BUNDLED_PROMPT_SETS / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise PromptSetError(
        f"prompt set {str(name)!r} is neither a file nor a bundled set (bundled: {', '.join(bundled_prompt_sets())})"
    )


def load_prompt_set(prompts: PromptSet | str | os.PathLike) -> PromptSet:
    """A ``PromptSet`` as given, or read from a file path or a bundled set's name."""
    return prompts if isinstance(prompts, PromptSet) else read_prompt_set(resolve_prompt_set(prompts))
