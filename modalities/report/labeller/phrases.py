"""Phrase patterns and a matcher that runs in linear time in the length of the text.

Vocabulary files are data a user edits, and report text is untrusted input, so no user-written regular expression ever
runs (a regular expression with nested repetition can take exponential time on a crafted string). A phrase is a
sequence of whitespace-separated pieces, each matching exactly one token (``tokens.py``) except gaps:

- a word or punctuation mark: ``effusion``, ``:``, ``?`` (a piece such as ``r/o`` or ``can't`` is split into its
  tokens, exactly as report text is);
- a word prefix: ``opacit*`` matches "opacity", "opacities", "opacification" (at least 3 characters before ``*``);
- alternatives: ``enlarged|increased|prominent`` matches any one of them (each may be a word or a prefix);
- a bounded gap: ``~3`` matches up to 3 tokens of any kind except "," and ";" (never first or last, at most 2 per
  phrase, at most ``MAX_GAP`` tokens each), so ``heart ~3 enlarged`` matches "heart size is enlarged" but not "heart
  is normal, liver enlarged".

Why this is linear: the matcher looks at each token position once, finds the phrases that can start there by a
dictionary lookup of the token (and of its prefixes of the lengths some phrase uses), and tries each of them; one try
takes at most ``(MAX_GAP + 1) ** MAX_GAPS * MAX_UNITS`` steps, a constant of the vocabulary, never of the text.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .tokens import Token, tokenize

MAX_GAP = 5  # tokens one gap may skip: "heart size is mildly enlarged" needs 3, a list of organs needs 4 or 5
MAX_GAPS = 2  # gaps per phrase
MAX_UNITS = 12  # tokens per phrase; the longest trigger in practice ("no radiographic evidence of") has 4
MIN_PREFIX = 3  # "opa*" is already vague; shorter prefixes would match half the dictionary
GAP_STOPS = frozenset({",", ";"})  # a gap never reaches across a clause or list break

_GAP = re.compile(r"~(\d+)")
_WORD = re.compile(r"\w+")


class PhraseError(ValueError):
    """A phrase that cannot be compiled; the message says why (the vocabulary loader adds which key holds it)."""


@dataclass(frozen=True)
class Unit:
    """One token position: any of ``words`` exactly, or a word starting with any of ``prefixes``."""

    words: frozenset[str]
    prefixes: tuple[str, ...] = ()

    def accepts(self, token: Token) -> bool:
        if token.text in self.words:
            return True
        return token.is_word and any(token.text.startswith(prefix) for prefix in self.prefixes)


@dataclass(frozen=True)
class Gap:
    """Up to ``most`` tokens of any kind (except ``GAP_STOPS``)."""

    most: int


@dataclass(frozen=True)
class Phrase:
    """A compiled phrase: its source text (for error messages and reports) and its units and gaps."""

    source: str
    elements: tuple[Unit | Gap, ...]


class PhraseMatch(NamedTuple):
    """Tokens ``[start, end)`` of a sentence matched ``key`` (whatever the matcher's owner attached to the phrase)."""

    start: int
    end: int
    key: Hashable


def _alternative(piece: str, source: str) -> tuple[str | None, str | None]:
    """One alternative of a piece -> (exact word, None) or (None, prefix)."""
    if piece.endswith("*"):
        stem = piece[:-1].lower()
        if not _WORD.fullmatch(stem) or len(stem) < MIN_PREFIX:
            raise PhraseError(
                f"phrase {source!r}: a prefix needs at least {MIN_PREFIX} letters or digits before '*', got {piece!r}"
            )
        return None, stem
    tokens = tokenize(piece)
    if len(tokens) != 1:
        raise PhraseError(f"phrase {source!r}: each alternative of a '|' piece must be one word, got {piece!r}")
    return tokens[0].text, None


def _unit(piece: str, source: str) -> Unit:
    words, prefixes = set(), []
    for option in piece.split("|"):
        if not option:
            raise PhraseError(f"phrase {source!r}: empty alternative in {piece!r}")
        word, prefix = _alternative(option, source)
        if word is not None:
            words.add(word)
        else:
            prefixes.append(prefix)
    return Unit(frozenset(words), tuple(prefixes))


def parse_phrase(source: str) -> Phrase:
    """Compile one phrase (syntax in the module docstring).

    Raises:
        PhraseError: an empty phrase, a bad prefix or alternative, a misplaced or too wide gap, too many units or gaps.
    """
    if not isinstance(source, str):
        raise PhraseError(f"a phrase must be text, got {type(source).__name__}")
    elements: list[Unit | Gap] = []
    for piece in source.split():
        gap = _GAP.fullmatch(piece)
        if gap:
            most = int(gap.group(1))
            if not 1 <= most <= MAX_GAP:
                raise PhraseError(f"phrase {source!r}: a gap spans 1 to {MAX_GAP} tokens, got {piece!r}")
            if not elements or isinstance(elements[-1], Gap):
                raise PhraseError(f"phrase {source!r}: a gap must follow a word, not start the phrase or another gap")
            elements.append(Gap(most))
        elif "|" in piece or piece.endswith("*"):
            elements.append(_unit(piece, source))
        else:
            elements.extend(Unit(frozenset([token.text])) for token in tokenize(piece))
    if not elements:
        raise PhraseError(f"phrase {source!r} holds no word")
    if isinstance(elements[-1], Gap):
        raise PhraseError(f"phrase {source!r}: a gap cannot end the phrase")
    if sum(isinstance(element, Gap) for element in elements) > MAX_GAPS:
        raise PhraseError(f"phrase {source!r}: at most {MAX_GAPS} gaps")
    if sum(isinstance(element, Unit) for element in elements) > MAX_UNITS:
        raise PhraseError(f"phrase {source!r}: at most {MAX_UNITS} words and marks")
    return Phrase(source, tuple(elements))


def _match_end(elements: Sequence[Unit | Gap], index: int, tokens: Sequence[Token], position: int) -> int | None:
    """End of the shortest match of ``elements[index:]`` starting at ``tokens[position]``, or None."""
    while index < len(elements):
        element = elements[index]
        if isinstance(element, Gap):
            for skip in range(element.most + 1):
                if skip and (position + skip > len(tokens) or tokens[position + skip - 1].text in GAP_STOPS):
                    return None
                end = _match_end(elements, index + 1, tokens, position + skip)
                if end is not None:
                    return end
            return None
        if position >= len(tokens) or not element.accepts(tokens[position]):
            return None
        position += 1
        index += 1
    return position


class PhraseMatcher:
    """All phrases of one kind (the mentions of a vocabulary, or its triggers), indexed by how they can start.

    Args:
        entries: (phrase, key) pairs; a match reports the key of its phrase.
    """

    def __init__(self, entries: Iterable[tuple[Phrase, Hashable]]) -> None:
        self._by_word: dict[str, list[tuple[Phrase, Hashable]]] = {}
        self._by_prefix: dict[str, list[tuple[Phrase, Hashable]]] = {}
        for phrase, key in entries:
            first = phrase.elements[0]
            assert isinstance(first, Unit)  # parse_phrase never lets a gap start a phrase
            for word in first.words:
                self._by_word.setdefault(word, []).append((phrase, key))
            for prefix in first.prefixes:
                self._by_prefix.setdefault(prefix, []).append((phrase, key))
        self._prefix_lengths = sorted({len(prefix) for prefix in self._by_prefix})

    def _starting_with(self, token: Token) -> list[tuple[Phrase, Hashable]]:
        candidates = list(self._by_word.get(token.text, ()))
        if token.is_word:
            for length in self._prefix_lengths:
                if length > len(token.text):
                    break
                candidates.extend(self._by_prefix.get(token.text[:length], ()))
        return candidates

    def find_all(self, tokens: Sequence[Token]) -> list[PhraseMatch]:
        """Every (start, end, key) where a phrase matches, in order of start; overlapping matches included."""
        matches = []
        for start, token in enumerate(tokens):
            for phrase, key in self._starting_with(token):  # their first unit accepts this token: match the rest
                end = _match_end(phrase.elements, 1, tokens, start + 1)
                if end is not None:
                    matches.append(PhraseMatch(start, end, key))
        return matches


class Span(NamedTuple):
    """A chosen, non-overlapping match: tokens ``[start, end)`` and the keys of every phrase that matched them."""

    start: int
    end: int
    keys: frozenset


def leftmost_longest(matches: Iterable[PhraseMatch]) -> list[Span]:
    """Non-overlapping matches, reading left to right and taking the longest match at each start.

    "cannot be excluded" (uncertainty) thus wins over "not" (negation) inside it, and "no change in" (a pseudo-trigger)
    over "no". ``matches`` must be in order of start (as ``find_all`` returns them); the keys of equally long matches
    at the same start are kept together, for the owner to decide between.
    """
    chosen: list[Span] = []
    start = end = -1
    keys: set[Hashable] = set()

    def flush() -> None:
        if keys and (not chosen or start >= chosen[-1].end):
            chosen.append(Span(start, end, frozenset(keys)))

    for match in matches:
        if match.start != start:
            flush()
            start, end, keys = match.start, match.end, {match.key}
        elif match.end > end:
            end, keys = match.end, {match.key}
        elif match.end == end:
            keys.add(match.key)
    flush()
    return chosen
