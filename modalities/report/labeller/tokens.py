"""Words and punctuation marks of a sentence: what mention phrases and triggers are matched against.

Matching works on tokens rather than on characters so that every phrase runs in linear time (see ``phrases.py``) and
so that spelling variants of spacing and case never matter: "Pleural  effusion", "pleural effusion" and "PLEURAL
EFFUSION" are the same three tokens. Hyphens are separators, not tokens, because reports write compounds both ways
("ground-glass" / "ground glass", "A-V block" / "AV block" are told apart only by the phrase lists, not by hyphens).
Other punctuation marks are kept, one token each: they carry meaning for triggers ("r/o", "w/o", "?", "Effusion: none")
and end a negation's reach (";").
"""

from __future__ import annotations

import re
from typing import NamedTuple

# One token: a run of word characters, or one punctuation mark other than a hyphen. No nested or overlapping
# quantifiers, so the pattern scans text in linear time.
_TOKEN = re.compile(r"(?P<word>\w+)|[^\w\s\-\u2010-\u2015]")


class Token(NamedTuple):
    """One token of a sentence.

    Attributes:
        text: the token in lower case.
        is_word: True for words (letters and digits), False for punctuation marks; only words count towards the reach
            of a negation or uncertainty trigger.
    """

    text: str
    is_word: bool


def tokenize(text: str) -> list[Token]:
    """Lower-cased tokens of ``text`` in reading order."""
    tokens = []
    for match in _TOKEN.finditer(text):
        tokens.append(Token(match.group().lower(), match.lastgroup == "word"))
    return tokens
