"""``ReportLabeller``: report text -> one state per finding of a vocabulary (positive / negative / uncertain / not
mentioned) -> ``label:<finding>`` values.

For each sentence of the kept sections (``text.py``): find every mention phrase of every finding and every trigger
(``phrases.py``, linear time); drop mentions lying wholly inside a finding's ``exclude`` phrases ("pericardial
effusion" is not a pleural effusion, but "pleural or pericardial effusion" mentions one); keep the leftmost-longest
of the rest per finding; decide each one's status from the triggers in reach (``scope.py``); combine them per finding
(``aggregate.py``). Phrases in a finding's ``normal`` list state that
the finding is absent ("normal heart size"): they count as negative mentions, or uncertain when hedged.

Nothing here logs or stores report text; ``mentions`` returns token positions and phrase sources for a person
checking a vocabulary on their own data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .aggregate import U_IGNORE, check_policy, finding_state, label_value, no_finding_state
from .phrases import PhraseMatch, PhraseMatcher, leftmost_longest
from .scope import NEGATIVE, UNCERTAIN, TriggerIndex
from .text import report_sentences
from .tokens import Token, tokenize
from .vocabulary import TRIGGER_KINDS, Vocabulary

DEFAULT_SECTIONS = ("findings", "impression")  # as the report plugin: history / indication are not findings
_MENTION = "mention"
_NORMAL = "normal"
_EXCLUDE = "exclude"


@dataclass(frozen=True)
class Mention:
    """One mention of a finding.

    Attributes:
        finding: the finding's name.
        status: "positive", "negative" or "uncertain".
        sentence: index of the sentence among the report's kept sentences.
        start: first token of the mention in its sentence.
        end: one past its last token.
        phrase: the vocabulary phrase that matched.
    """

    finding: str
    status: str
    sentence: int
    start: int
    end: int
    phrase: str


class ReportLabeller:
    """Labels reports with one vocabulary.

    Args:
        vocabulary: a loaded vocabulary (``load_vocabulary``).
        sections: report sections to read when a report has them (names of ``sections.SECTION_ALIASES``); a report
            with none of them is read whole. Empty reads every report whole.
    """

    def __init__(self, vocabulary: Vocabulary, sections: Sequence[str] = DEFAULT_SECTIONS) -> None:
        self.vocabulary = vocabulary
        self.sections = tuple(sections)
        kinds: dict[str, set[str]] = {}
        phrases = {}
        for kind in TRIGGER_KINDS:
            for phrase in vocabulary.triggers[kind]:
                kinds.setdefault(phrase.source, set()).add(kind)
                phrases[phrase.source] = phrase
        # A phrase listed under two kinds ("versus": uncertainty before and after) is one trigger with both kinds.
        self._triggers = PhraseMatcher((phrases[source], frozenset(kind)) for source, kind in kinds.items())
        entries = []
        for index, finding in enumerate(vocabulary.findings):
            for role, group in ((_MENTION, finding.mentions), (_NORMAL, finding.normal), (_EXCLUDE, finding.exclude)):
                entries.extend((phrase, (index, role, phrase.source)) for phrase in group)
        self._phrases = PhraseMatcher(entries)

    def _sentence_mentions(self, tokens: Sequence[Token], sentence: int) -> list[Mention]:
        index = TriggerIndex(tokens, leftmost_longest(self._triggers.find_all(tokens)))
        by_finding: dict[int, list[PhraseMatch]] = {}
        excluded: dict[int, set[int]] = {}  # finding -> token positions inside its exclude phrases
        for match in self._phrases.find_all(tokens):
            finding, role, _ = match.key
            if role == _EXCLUDE:
                excluded.setdefault(finding, set()).update(range(match.start, match.end))
            else:
                by_finding.setdefault(finding, []).append(match)
        mentions = []
        scope = self.vocabulary.scope
        for finding, matches in by_finding.items():
            covered = excluded.get(finding, set())
            kept = [match for match in matches if not covered.issuperset(range(match.start, match.end))]
            for span in leftmost_longest(kept):
                roles = {role for _, role, _ in span.keys}
                source = min(source for _, role, source in span.keys)
                if _NORMAL in roles:  # "normal heart size" wins over a mention of the same length
                    status = UNCERTAIN if index.hedged(span.start, span.end, scope) else NEGATIVE
                else:
                    status = index.status(span.start, span.end, scope)
                name = self.vocabulary.findings[finding].name
                mentions.append(Mention(name, status, sentence, span.start, span.end, source))
        return mentions

    def mentions(self, text: str) -> list[Mention]:
        """Every mention of every finding in ``text``, sentence by sentence."""
        found = []
        for number, sentence in enumerate(report_sentences(text, self.sections)):
            found.extend(self._sentence_mentions(tokenize(sentence), number))
        return found

    def states(self, text: str) -> dict[str, str]:
        """Finding name -> "positive" / "negative" / "uncertain" / "not_mentioned", in ``label_names`` order."""
        statuses: dict[str, list[str]] = {finding.name: [] for finding in self.vocabulary.findings}
        for mention in self.mentions(text):
            statuses[mention.finding].append(mention.status)
        states = {name: finding_state(found) for name, found in statuses.items()}
        no_finding = self.vocabulary.no_finding
        if no_finding is None:
            return states
        return {no_finding.name: no_finding_state(states, no_finding.ignore), **states}

    def labels(self, text: str, uncertain: str = U_IGNORE) -> dict[str, int | None]:
        """Finding name -> 1 / 0 / None (blank), uncertain findings mapped by the ``uncertain`` policy."""
        check_policy(uncertain)
        return {name: label_value(state, uncertain) for name, state in self.states(text).items()}
