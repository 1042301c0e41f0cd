"""Report text -> the sentences the labeller reads: the report plugin's own cleaning, sections and sentence splitting.

The labeller reads the text the way the ``report`` modality does (``cleaning.py``, ``sections.py``,
``sentences.py``), so a label and the embedding of the same report see the same sections. Two guards keep the whole
path linear in the length of a report, whatever it holds (a crafted report must not stall a labelling run):

- runs of sentence marks ("......", "?!?!") are shortened to their first mark: the sentence splitter's end pattern
  backtracks over such runs in quadratic time, and a run means the same sentence end as one mark;
- text is split into pieces of at most ``MAX_PIECE_CHARS`` characters before sentence splitting, cut at a paragraph
  break, else after a sentence end, else at a line break or a space: the splitter re-reads the text since the last
  sentence end at every abbreviation, which is quadratic in a long run without one. Real reports are far shorter
  than a piece, or have sentence ends well within one, so the cut changes no sentence of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..cleaning import clean_report_text
from ..sections import extract_sections
from ..sentences import split_sentences

MAX_PIECE_CHARS = 2000  # a long paragraph of a real report; the splitter's worst case per piece stays ~1 ms
_SENTENCE_MARK_RUN = re.compile(r"([.!?])[.!?]+")
# Where a long text may be cut, best first: a paragraph break, a sentence end, a line break, a space.
_CUT_MARKS = (("\n\n",), (". ", ".\n", "? ", "?\n", "! ", "!\n"), ("\n",), (" ",))


def _cut(text: str, start: int, end: int) -> int:
    """Where to end the piece ``text[start:end]``: after the last best cut mark in its last three quarters."""
    floor = start + (end - start) // 4  # a cut nearer the start would leave a tiny piece and slow progress
    for marks in _CUT_MARKS:
        found = max(text.rfind(mark, floor, end) for mark in marks)
        if found >= floor:
            return found + 1
    return end


def pieces(text: str, limit: int = MAX_PIECE_CHARS) -> list[str]:
    """``text`` cut into consecutive pieces of at most ``limit`` characters (joined, they give ``text`` back)."""
    parts = []
    start = 0
    while len(text) - start > limit:
        end = _cut(text, start, start + limit)
        parts.append(text[start:end])
        start = end
    parts.append(text[start:])
    return parts


def report_sentences(text: str, sections: Sequence[str] = ()) -> list[str]:
    """Cleaned sentences of ``text``, restricted to ``sections`` when the report has any of them (all text otherwise).

    Args:
        text: raw report text.
        sections: section names of ``sections.SECTION_ALIASES`` to keep, in this order; empty keeps everything.
    """
    text = _SENTENCE_MARK_RUN.sub(r"\1", clean_report_text(text))
    if sections:
        text = extract_sections(text, sections).text
    return [sentence for piece in pieces(text) for sentence in split_sentences(piece)]
