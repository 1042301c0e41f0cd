"""Measuring a labeller against hand labels: precision, recall and F1 per finding for each label class.

Hand labels are ``{finding: 1 | 0 | "u"}`` per report ("u": the report hedges); a finding missing from the dict is not
mentioned. Each class (positive, negative, uncertain) is scored one-vs-rest over the reports: for the positive class
of a finding, a true positive is a report both the labeller and the hand label call positive; precision divides by the
reports the labeller calls positive, recall by those the hand label calls positive. The "no finding" label, when the
vocabulary has one, is scored against the value CheXpert's rule derives from the hand labels of the other findings.

Summary figures: macro F1 (the mean F1 over every (finding, class) with hand-labelled support, positive and negative
classes only, as the issue asks) and micro F1 per class (counts pooled over findings, so a false positive on a
finding nobody labelled still counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .aggregate import no_finding_state
from .labeller import ReportLabeller
from .scope import NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN

HAND_VALUES = {1: POSITIVE, 0: NEGATIVE, "u": UNCERTAIN}
SCORED_CLASSES = (POSITIVE, NEGATIVE, UNCERTAIN)
MACRO_CLASSES = (POSITIVE, NEGATIVE)


@dataclass
class ClassScore:
    """Counts of one (finding, class): hand-labelled support, labeller predictions, and their agreement."""

    support: int = 0
    predicted: int = 0
    agreed: int = 0

    @property
    def precision(self) -> float | None:
        return self.agreed / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.agreed / self.support if self.support else None

    @property
    def f1(self) -> float | None:
        if not self.support:
            return None
        return 2 * self.agreed / (self.support + self.predicted)


@dataclass
class Evaluation:
    """Scores of one labeller on one hand-labelled set.

    Attributes:
        reports: how many reports were scored.
        scores: finding -> class -> counts, in the vocabulary's label order.
        confusions: (finding, hand state, labeller state) -> count, disagreements only.
    """

    reports: int
    scores: dict[str, dict[str, ClassScore]]
    confusions: dict[tuple[str, str, str], int]

    @property
    def macro_f1(self) -> float:
        """Mean F1 over (finding, positive/negative class) pairs that have hand-labelled support."""
        values = [
            by_class[name].f1
            for by_class in self.scores.values()
            for name in MACRO_CLASSES
            if by_class[name].f1 is not None
        ]
        return sum(values) / len(values) if values else 0.0

    def micro(self, name: str) -> ClassScore:
        """Counts of class ``name`` pooled over all findings."""
        pooled = ClassScore()
        for by_class in self.scores.values():
            pooled.support += by_class[name].support
            pooled.predicted += by_class[name].predicted
            pooled.agreed += by_class[name].agreed
        return pooled


def hand_states(labels: Mapping[str, int | str], labeller: ReportLabeller) -> dict[str, str]:
    """Hand labels -> one state per label of the labeller's vocabulary (derived "no finding" included).

    Raises:
        ValueError: a hand label names no finding of the vocabulary, or has a value other than 1, 0, "u".
    """
    vocabulary = labeller.vocabulary
    names = [finding.name for finding in vocabulary.findings]
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"hand labels name findings the vocabulary lacks: {', '.join(unknown)}")
    states = {}
    for name in names:
        value = labels.get(name)
        if value is not None and value not in HAND_VALUES:
            raise ValueError(f"hand label of {name!r} must be 1, 0 or 'u', got {value!r}")
        states[name] = HAND_VALUES[value] if value is not None else NOT_MENTIONED
    if vocabulary.no_finding is None:
        return states
    return {vocabulary.no_finding.name: no_finding_state(states, vocabulary.no_finding.ignore), **states}


def evaluate(labeller: ReportLabeller, reports: Sequence[tuple[str, Mapping[str, int | str]]]) -> Evaluation:
    """Score ``labeller`` on (report text, hand labels) pairs."""
    names = labeller.vocabulary.label_names
    scores = {name: {state: ClassScore() for state in SCORED_CLASSES} for name in names}
    confusions: dict[tuple[str, str, str], int] = {}
    for text, labels in reports:
        truth = hand_states(labels, labeller)
        found = labeller.states(text)
        for name in names:
            if truth[name] in scores[name]:
                scores[name][truth[name]].support += 1
            if found[name] in scores[name]:
                scores[name][found[name]].predicted += 1
            if truth[name] == found[name]:
                if truth[name] in scores[name]:
                    scores[name][truth[name]].agreed += 1
            else:
                key = (name, truth[name], found[name])
                confusions[key] = confusions.get(key, 0) + 1
    return Evaluation(len(reports), scores, confusions)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(evaluation: Evaluation) -> str:
    """Per-finding precision / recall / F1 for positive and negative labels, and uncertain support / P / R."""
    header = (
        "| finding | pos n | pos P | pos R | pos F1 | neg n | neg P | neg R | neg F1 | unc n | unc P | unc R |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [header]
    items = [*evaluation.scores.items(), *[("all (micro)", {name: evaluation.micro(name) for name in SCORED_CLASSES})]]
    for name, by_class in items:
        cells = [name]
        for state in MACRO_CLASSES:
            score = by_class[state]
            cells += [str(score.support), _cell(score.precision), _cell(score.recall), _cell(score.f1)]
        uncertain = by_class[UNCERTAIN]
        cells += [str(uncertain.support), _cell(uncertain.precision), _cell(uncertain.recall)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
