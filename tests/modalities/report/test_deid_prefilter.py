"""The de-identification pre-filter (``Needs``: labels, digits, capitals a rule's matches must hold) only skips rules
that cannot match: with and without it, every text gives the same findings."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from modalities.report.deid import RULES, Deidentifier
from modalities.report.deid_eval import read_corpus
from tests.modalities.report.deid_examples import RULE_EXAMPLES

CORPUS = sorted((Path(__file__).resolve().parents[2] / "data" / "deid").glob("*.txt"))
UNFILTERED = Deidentifier(rules=[dataclasses.replace(rule, needs=None) for rule in RULES])
FILTERED = Deidentifier()
PIECES = [*RULE_EXAMPLES.values(), "MRN", "Dr.", "by", "ID", " ", "\n", ", ", ": ", "^", "7", "ſsn 12345", "Ünal"]


def test_every_builtin_rule_has_a_prefilter():
    assert all(rule.needs is not None for rule in RULES)


def test_same_findings_on_the_annotated_corpus():
    for report in read_corpus(CORPUS):
        assert FILTERED.find(report.text) == UNFILTERED.find(report.text), report.title


def test_same_findings_on_random_mixtures_of_rule_examples():
    rng = random.Random(14)
    for _ in range(400):
        pieces = rng.choices(PIECES, k=rng.randint(1, 6))
        text = "".join(piece.lower() if rng.random() < 0.2 else piece for piece in pieces)
        assert FILTERED.find(text) == UNFILTERED.find(text), text
