"""Negation and uncertainty of one mention, NegEx / ConText style: the nearest trigger within reach decides.

Triggers are matched leftmost-longest over the sentence, so a long trigger hides the short ones inside it ("cannot
be excluded" is uncertainty, not the negation "not"; "no change in" is a pseudo-trigger, not "no"). For a mention:

- looking back from the mention, the nearest trigger within ``Scope.pre_words`` words counts when it is a
  pre-trigger (negation, uncertainty, or a pseudo-trigger, which counts as nothing); a termination ("but", "however",
  ";") or a post-trigger (it belongs to an earlier mention) ends the search;
- looking ahead, the nearest post-trigger within ``Scope.post_words`` words counts; a comma, a termination or a
  pre-trigger ends the search (in "consolidation at the base, effusion is absent" only the effusion is absent);
- a trigger inside the mention's own words counts too: "heart is not enlarged" is the mention "heart ~3 enlarged"
  with "not" inside it.

Uncertainty wins over negation ("no pneumothorax is suspected?" is uncertain), as in the CheXpert labeller, which
classifies uncertainty before negation.
"""

from __future__ import annotations

from collections.abc import Sequence

from .phrases import Span
from .tokens import Token
from .vocabulary import (
    POST_NEGATION,
    POST_UNCERTAINTY,
    PRE_NEGATION,
    PRE_UNCERTAINTY,
    PSEUDO,
    TERMINATION,
    Scope,
)

POSITIVE = "positive"
NEGATIVE = "negative"
UNCERTAIN = "uncertain"
NOT_MENTIONED = "not_mentioned"
STATES = (POSITIVE, NEGATIVE, UNCERTAIN, NOT_MENTIONED)

_PRE_KINDS = frozenset({PRE_NEGATION, PRE_UNCERTAINTY, PSEUDO})
_POST_KINDS = frozenset({POST_NEGATION, POST_UNCERTAINTY})
_POST_STOP = ","  # a post-trigger never reaches back over a comma


class TriggerIndex:
    """The triggers of one sentence, indexed by the token where each starts and ends.

    Args:
        tokens: the sentence's tokens.
        triggers: leftmost-longest trigger spans; each span's keys are frozensets of trigger kinds.
    """

    def __init__(self, tokens: Sequence[Token], triggers: Sequence[Span]) -> None:
        self.tokens = tokens
        self.kinds: list[frozenset[str]] = [frozenset().union(*span.keys) for span in triggers]
        self.spans = list(triggers)
        self.starting_at: dict[int, int] = {span.start: index for index, span in enumerate(triggers)}
        self.ending_at: dict[int, int] = {span.end - 1: index for index, span in enumerate(triggers)}

    def _before(self, start: int, reach: int) -> frozenset[str]:
        """Kinds of the nearest pre-trigger before token ``start``, within ``reach`` words; empty when none."""
        position, words = start - 1, 0
        while position >= 0:
            index = self.ending_at.get(position)
            if index is not None:
                kinds = self.kinds[index]
                if TERMINATION in kinds or not kinds & _PRE_KINDS:
                    return frozenset()
                return kinds
            if self.tokens[position].is_word:
                words += 1
                if words > reach:
                    return frozenset()
            position -= 1
        return frozenset()

    def _after(self, end: int, reach: int) -> frozenset[str]:
        """Kinds of the nearest post-trigger from token ``end`` on, within ``reach`` words; empty when none."""
        position, words = end, 0
        while position < len(self.tokens):
            index = self.starting_at.get(position)
            if index is not None:
                kinds = self.kinds[index]
                if TERMINATION in kinds or not kinds & _POST_KINDS:
                    return frozenset()
                return kinds
            token = self.tokens[position]
            if token.text == _POST_STOP:
                return frozenset()
            if token.is_word:
                words += 1
                if words > reach:
                    return frozenset()
            position += 1
        return frozenset()

    def _inside(self, start: int, end: int) -> frozenset[str]:
        """Kinds of the triggers lying wholly inside tokens ``[start, end)`` (a mention with a gap)."""
        kinds: frozenset[str] = frozenset()
        for position in range(start + 1, end):
            index = self.starting_at.get(position)
            if index is not None and self.spans[index].end <= end:
                kinds |= self.kinds[index]
        return kinds

    def status(self, start: int, end: int, scope: Scope) -> str:
        """POSITIVE, NEGATIVE or UNCERTAIN for the mention at tokens ``[start, end)``."""
        before = self._before(start, scope.pre_words)
        after = self._after(end, scope.post_words)
        inside = self._inside(start, end)
        if PRE_UNCERTAINTY in before or POST_UNCERTAINTY in after or inside & {PRE_UNCERTAINTY, POST_UNCERTAINTY}:
            return UNCERTAIN
        if PRE_NEGATION in before or POST_NEGATION in after or inside & {PRE_NEGATION, POST_NEGATION}:
            return NEGATIVE
        return POSITIVE

    def hedged(self, start: int, end: int, scope: Scope) -> bool:
        """Whether an uncertainty trigger covers tokens ``[start, end)`` (for phrases that state absence)."""
        kinds = self._before(start, scope.pre_words) | self._after(end, scope.post_words) | self._inside(start, end)
        return bool(kinds & {PRE_UNCERTAINTY, POST_UNCERTAINTY})
