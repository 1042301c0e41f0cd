"""Measuring de-identification: read an annotated report corpus and score a ``Deidentifier`` on it.

The corpus format is plain text a reviewer can read and extend: reports are separated by lines starting with
``### `` (the rest of that line is the report's title), and inline tags mark what the annotator planted or wants kept:
``<NAME>Jane Roe</NAME>``, ``<DATE>...</DATE>``, ``<ID>``, ``<PHONE>``, ``<EMAIL>``, ``<ADDRESS>``, ``<AGE>``, ``<URL>``
for identifiers and ``<KEEP>3.5 cm</KEEP>`` for clinical content that must survive. Lines starting with ``#`` before
the first report are comments.

Scores (per identifier type):

- recall: share of annotated identifiers whose every letter and digit is covered by found spans *of the same type*
  (a name replaced as [ID] counts as missed here; ``any_type_recall`` counts it, which is what matters for privacy);
- precision: share of found spans of that type that overlap an annotated identifier of the same type;
- clinical preservation: share of ``KEEP`` spans that no found span touches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .deid import PLACEHOLDERS, Deidentifier, PhiSpan

if TYPE_CHECKING:
    from .deid_backends import TextDeidentifier

KEEP = "KEEP"
TAG_KINDS = (*PLACEHOLDERS, KEEP)
_TAG = re.compile(r"<(?P<kind>" + "|".join(TAG_KINDS) + r")>(?P<body>.*?)</(?P=kind)>", re.DOTALL)
_TAG_MARK = re.compile(r"</?(?:" + "|".join(TAG_KINDS) + r")>")


@dataclass(frozen=True)
class AnnotatedReport:
    """One report of the corpus with its annotations removed from the text.

    Attributes:
        title: the text after ``###`` (an identifier such as "001 CT chest").
        text: the report text without tags.
        phi: (start, end, kind) of each annotated identifier in ``text``.
        keep: (start, end) of each clinical span that must survive.
    """

    title: str
    text: str
    phi: tuple[tuple[int, int, str], ...]
    keep: tuple[tuple[int, int], ...]


def parse_annotated(text: str, title: str = "") -> AnnotatedReport:
    """Strip the inline tags from ``text`` and record their spans."""
    pieces: list[str] = []
    phi: list[tuple[int, int, str]] = []
    keep: list[tuple[int, int]] = []
    position = length = 0
    for match in _TAG.finditer(text):
        before = text[position : match.start()]
        pieces.append(before)
        length += len(before)
        body = match.group("body")
        if _TAG_MARK.search(body):
            raise ValueError(f"report {title!r}: nested or unclosed tag inside {match.group()!r}")
        span = (length, length + len(body))
        if match.group("kind") == KEEP:
            keep.append(span)
        else:
            phi.append((*span, match.group("kind")))
        pieces.append(body)
        length += len(body)
        position = match.end()
    pieces.append(text[position:])
    clean = "".join(pieces)
    if _TAG_MARK.search(clean):
        raise ValueError(f"report {title!r}: a tag is not closed")
    return AnnotatedReport(title=title, text=clean, phi=tuple(phi), keep=tuple(keep))


def read_corpus(paths: Iterable[str | Path]) -> list[AnnotatedReport]:
    """All reports of the given corpus files, in order."""
    reports: list[AnnotatedReport] = []
    for path in paths:
        title: str | None = None
        lines: list[str] = []
        for line in [*Path(path).read_text(encoding="utf-8").splitlines(), "### end"]:
            if line.startswith("### "):
                if title is not None:
                    reports.append(parse_annotated("\n".join(lines).strip("\n"), title))
                title, lines = line[4:].strip(), []
            elif title is not None:
                lines.append(line)
    return reports


@dataclass
class TypeScore:
    """Counts for one identifier type."""

    gold: int = 0
    recalled: int = 0
    recalled_any_type: int = 0
    found: int = 0
    found_correct: int = 0

    @property
    def recall(self) -> float:
        return self.recalled / self.gold if self.gold else float("nan")

    @property
    def any_type_recall(self) -> float:
        return self.recalled_any_type / self.gold if self.gold else float("nan")

    @property
    def precision(self) -> float:
        return self.found_correct / self.found if self.found else float("nan")


@dataclass
class DeidScore:
    """Scores over a corpus, with the misses and false alarms listed for inspection.

    Attributes:
        per_type: identifier type -> counts.
        keep_total: annotated clinical spans.
        keep_preserved: clinical spans no found span touched.
        missed: (report title, kind, annotated text) of identifiers not fully covered by the same type.
        false_alarms: (report title, kind, found text, rule) of found spans touching no annotation of their type.
        destroyed: (report title, clinical text) of clinical spans a found span touched.
    """

    per_type: dict[str, TypeScore] = field(default_factory=dict)
    keep_total: int = 0
    keep_preserved: int = 0
    missed: list[tuple[str, str, str]] = field(default_factory=list)
    false_alarms: list[tuple[str, str, str, str]] = field(default_factory=list)
    destroyed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def preservation(self) -> float:
        return self.keep_preserved / self.keep_total if self.keep_total else float("nan")

    def overall(self) -> TypeScore:
        total = TypeScore()
        for score in self.per_type.values():
            for name in ("gold", "recalled", "recalled_any_type", "found", "found_correct"):
                setattr(total, name, getattr(total, name) + getattr(score, name))
        return total


def _covered(text: str, start: int, end: int, spans: Sequence[PhiSpan]) -> bool:
    """Every letter and digit of text[start:end] lies inside one of ``spans``."""
    return all(
        any(span.start <= index < span.end for span in spans) for index in range(start, end) if text[index].isalnum()
    )


def _overlaps(start: int, end: int, other_start: int, other_end: int) -> bool:
    return start < other_end and other_start < end


def score_corpus(reports: Sequence[AnnotatedReport], deidentifier: TextDeidentifier | None = None) -> DeidScore:
    """Run ``deidentifier`` (any backend's, ``deid_backends.py``; the default rule set if None) on every report and
    count hits, misses and damage."""
    deidentifier = deidentifier or Deidentifier()
    result = DeidScore(per_type={kind: TypeScore() for kind in PLACEHOLDERS})
    for report in reports:
        found = deidentifier.find(report.text)
        for start, end, kind in report.phi:
            score = result.per_type[kind]
            score.gold += 1
            same_type = [span for span in found if span.kind == kind]
            if _covered(report.text, start, end, same_type):
                score.recalled += 1
            else:
                result.missed.append((report.title, kind, report.text[start:end]))
            if _covered(report.text, start, end, found):
                score.recalled_any_type += 1
        for span in found:
            score = result.per_type[span.kind]
            score.found += 1
            if any(
                kind == span.kind and _overlaps(span.start, span.end, start, end) for start, end, kind in report.phi
            ):
                score.found_correct += 1
            else:
                result.false_alarms.append((report.title, span.kind, report.text[span.start : span.end], span.rule))
        for start, end in report.keep:
            result.keep_total += 1
            if any(_overlaps(start, end, span.start, span.end) for span in found):
                result.destroyed.append((report.title, report.text[start:end]))
            else:
                result.keep_preserved += 1
    return result
