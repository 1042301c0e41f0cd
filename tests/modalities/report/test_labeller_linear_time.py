"""Adversarial long reports: labelling stays linear in the length of the text, within a time budget.

A labelling run reads untrusted text: one crafted report must not stall it. Each case below is shaped to hit a
super-linear path of some part of the pipeline: runs of sentence marks and of spaces (the report plugin's sentence and
section regular expressions backtrack over them), long runs without a sentence end but full of abbreviations (the
sentence splitter re-reads the text since the last sentence end), near-matches of gapped phrases, a trigger or
mention at every token, long words against prefix phrases, text that grows under Unicode normalisation.

``test_adversarial_report_within_budget`` gives every case a fixed budget at ``SIZE`` characters (a quadratic path
takes minutes there: the unguarded sentence splitter needs ~45 s for 40 000 dots); the scaling test checks that 8 times
the text takes well under 64 times as long (linear: ~8, quadratic: ~64).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from modalities.report.labeller import ReportLabeller, load_vocabulary

SIZE = 30_000  # characters per adversarial report
BUDGET_SECONDS = 10.0  # per case and vocabulary; the slowest case takes ~0.5 s on one shared CPU core
_WORDS = (
    "no not effusion heart is enlarged cannot be excluded pleural , ; . ? : none possible change in the of "
    "pneumothorax st t wave pac lvh opacity ~ * | versus"
).split()


def _random_words(n: int) -> str:
    rng = random.Random(0)
    return " ".join(rng.choice(_WORDS) for _ in range(n // 6))


ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "trigger_every_word": lambda n: "no " * (n // 3),
    "mention_every_word": lambda n: "effusion " * (n // 9),
    "negated_mentions": lambda n: "no effusion " * (n // 12),
    "gap_never_closes": lambda n: "heart is " * (n // 9),
    "gap_closes_late": lambda n: "heart is is enlarged " * (n // 21),
    "dots": lambda n: "a" + "." * n,
    "question_exclamation_marks": lambda n: "!?" * (n // 2),
    "spaces": lambda n: " " * n + "x",
    "newlines": lambda n: "\n" * n,
    "tabs_and_spaces": lambda n: "\t \t" * (n // 3) + "y",
    "abbreviations": lambda n: "vs. " * (n // 4),
    "dotted_abbreviations": lambda n: "e.g. " * (n // 5),
    "sentence_every_word": lambda n: "a. " * (n // 3),
    "one_long_word": lambda n: "a" * n,
    "long_word_after_a_prefix": lambda n: "opacit" + "y" * n,
    "hashes": lambda n: "#" * n,
    "header_then_stars": lambda n: "FINDINGS" + "*" * n,
    "header_every_line": lambda n: "FINDINGS:\n" * (n // 10),
    "inline_headers": lambda n: "a. IMPRESSION: " * (n // 15),
    "commas": lambda n: ", " * (n // 2),
    "semicolons": lambda n: "; " * (n // 2),
    "accented_letters": lambda n: "é" * n,
    "line_separators": lambda n: "\u2028" * n,
    "grows_under_nfkc": lambda n: "\ufdfa" * (n // 18),  # one character -> 18 after NFKC
    "almost_a_trigger": lambda n: "cannot be " * (n // 10),
    "pseudo_trigger_every_word": lambda n: "no change " * (n // 10),
    "post_trigger_after_every_mention": lambda n: "effusion : none " * (n // 16),
    "question_after_every_mention": lambda n: "pneumonia? " * (n // 11),
    "hyphens": lambda n: "a-v-" * (n // 4),
    "random_vocabulary_words": _random_words,
    "phrase_syntax_in_text": lambda n: "~3 opacit* a|b " * (n // 15),
}


@pytest.fixture(scope="module")
def labellers() -> dict[str, ReportLabeller]:
    return {name: ReportLabeller(load_vocabulary(name)) for name in ("chest_xray", "chest_ct", "ecg")}


def _seconds(labeller: ReportLabeller, text: str, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        states = labeller.states(text)
        best = min(best, time.perf_counter() - start)
        assert set(states) == set(labeller.vocabulary.label_names)
    return best


@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_adversarial_report_within_budget(labellers, case):
    text = ADVERSARIAL[case](SIZE)
    for name, labeller in labellers.items():
        seconds = _seconds(labeller, text)
        assert seconds < BUDGET_SECONDS, f"{case} with {name}: {seconds:.1f} s for {len(text)} characters"


@pytest.mark.parametrize("case", ["trigger_every_word", "gap_closes_late", "abbreviations", "inline_headers"])
def test_time_grows_linearly(labellers, case):
    labeller = labellers["chest_xray"]
    small = max(_seconds(labeller, ADVERSARIAL[case](4_000), repeats=3), 0.02)  # floor: scheduler noise on short runs
    large = _seconds(labeller, ADVERSARIAL[case](32_000), repeats=3)
    assert large / small < 24, f"{case}: 8x the text took {large / small:.1f}x as long"


def test_pieces_rejoin_to_the_text_and_cut_at_paragraphs_then_sentence_ends():
    from modalities.report.labeller.text import pieces, report_sentences

    report = "FINDINGS: Small effusion. No pneumothorax.\n\nIMPRESSION: Effusion."
    assert pieces(report) == [report]  # a real report is never cut
    text = ("Sentence number one is here. " * 40 + "\n\n") * 5
    parts = pieces(text, limit=1000)
    assert "".join(parts) == text and all(len(part) <= 1000 for part in parts)
    assert all(part.endswith(("\n", ".")) for part in parts[:-1])
    assert pieces("x" * 2500, limit=1000) == ["x" * 1000, "x" * 1000, "x" * 500]  # no cut mark: a hard cut
    assert report_sentences("Effusion!!!!!! Pneumothorax?!?! Edema....") == ["Effusion!", "Pneumothorax?", "Edema."]
