"""Section extraction: keep FINDINGS / IMPRESSION (or whichever sections the config names) of a report.

Radiology reports are semi-structured: a header line ("FINDINGS:", "Impression", "**Conclusion:**") starts each
section. History, technique and comparison sections hold indications, dates and prior-study references that are not
about the image, so contrastive pretraining usually keeps only findings and impression (as in MIMIC-CXR work).

Headers are recognised, case-insensitively, at the start of a line, followed by a colon or by the end of the line
(so "Findings are consistent with ..." is a sentence, not a header). Exports that flatten a report onto one line
("... normal. IMPRESSION: No acute ...") are handled too, for headers written in capitals and followed by a colon.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Canonical section name -> header spellings seen in practice. "conclusion" and "opinion" (UK usage) are the
# impression under another name.
SECTION_ALIASES: dict[str, tuple[str, ...]] = {
    "findings": ("findings", "finding", "report findings"),
    "impression": (
        "impression",
        "impressions",
        "final impression",
        "conclusion",
        "conclusions",
        "opinion",
        "interpretation",
        "summary",
    ),
    "history": (
        "history",
        "clinical history",
        "clinical information",
        "clinical indication",
        "indication",
        "indications",
        "reason for exam",
        "reason for examination",
        "reason for study",
    ),
    "technique": ("technique", "procedure", "protocol"),
    "comparison": ("comparison", "comparisons", "prior studies"),
    "examination": ("exam", "examination", "study"),
    "recommendation": ("recommendation", "recommendations"),
    "addendum": ("addendum",),
}
SECTION_NAMES = frozenset(SECTION_ALIASES)
_CANONICAL = {alias: name for name, aliases in SECTION_ALIASES.items() for alias in aliases}


def _alternatives(aliases: list[str]) -> str:
    """A regex alternation of header spellings, longest first so "final impression" wins over "impression"."""
    return "|".join(re.escape(alias).replace(r"\ ", r"[ \t]+") for alias in sorted(aliases, key=len, reverse=True))


_ALTERNATIVES = _alternatives(list(_CANONICAL))
_CAPITAL_ALTERNATIVES = _alternatives([alias.upper() for alias in _CANONICAL])
# At a line start: optional markdown markers, the header, then a colon or the end of the line.
_LINE_HEADER = re.compile(
    rf"^[ \t]*[#*_]*[ \t]*(?P<alias>{_ALTERNATIVES})[ \t]*[*_]*[ \t]*(?::[*_]*|$)", re.IGNORECASE | re.MULTILINE
)
# Inside a line, right after a sentence end: only capitals followed by a colon, to be sure it is a header.
_INLINE_HEADER = re.compile(rf"(?:(?<=[.;!?] )|(?<=[.;!?]))(?P<alias>{_CAPITAL_ALTERNATIVES}):")


@dataclass(frozen=True)
class Sections:
    """The outcome of section extraction.

    Attributes:
        text: the kept sections joined by blank lines (paragraph breaks), or the whole text when none was found.
        found: canonical names of every recognised section header, in document order, without repeats.
        used_whole_text: True when none of the requested sections was present and the whole text was kept.
    """

    text: str
    found: list[str]
    used_whole_text: bool


def _canonical(alias: str) -> str:
    return _CANONICAL[" ".join(alias.lower().split())]


def extract_sections(text: str, keep: Sequence[str] = ("findings", "impression")) -> Sections:
    """Keep the sections named in ``keep`` (in that order); several blocks of one section are joined in order.

    Text before the first header (exam title, dictation banner) belongs to no section and is dropped when a kept
    section is found. When no kept section is present, the whole text is returned: free-text notes and zero-shot
    prompts have no headers at all.
    """
    matches = sorted([*_LINE_HEADER.finditer(text), *_INLINE_HEADER.finditer(text)], key=lambda match: match.start())
    headers: list[tuple[str, int, int]] = []  # (canonical name, header start, body start)
    for match in matches:
        if headers and match.start() < headers[-1][2]:
            continue  # the same header matched by both patterns
        headers.append((_canonical(match.group("alias")), match.start(), match.end()))
    found = list(dict.fromkeys(name for name, _, _ in headers))
    bodies: dict[str, list[str]] = {}
    for index, (name, _, body_start) in enumerate(headers):
        body_end = headers[index + 1][1] if index + 1 < len(headers) else len(text)
        bodies.setdefault(name, []).append(text[body_start:body_end].strip())
    if not any(name in bodies for name in keep):
        return Sections(text=text.strip(), found=found, used_whole_text=True)
    kept = ["\n".join(body for body in bodies[name] if body) for name in keep if name in bodies]
    return Sections(text="\n\n".join(part for part in kept if part), found=found, used_whole_text=False)
