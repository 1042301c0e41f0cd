"""Whitespace and character clean-up of raw report text, before section extraction.

Reports come from RIS exports, dictation systems and PDFs: Windows line ends, tabs, non-breaking spaces, stray
control characters. Line structure is kept because section headers are recognised at line starts.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_report_text(text: str) -> str:
    """Normalise unicode (NFKC), line ends and runs of spaces; keep line breaks; strip the ends.

    Content is never rewritten: only characters that carry no meaning (control characters, repeated spaces) change.
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
