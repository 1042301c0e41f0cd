"""The labeller's tokenizer and phrase matcher: syntax, what matches, leftmost-longest choice, refused phrases."""

from __future__ import annotations

import pytest

from modalities.report.labeller.phrases import (
    MAX_GAP,
    PhraseError,
    PhraseMatcher,
    leftmost_longest,
    parse_phrase,
)
from modalities.report.labeller.tokens import tokenize


def spans(phrases: list[str], text: str) -> list[tuple[str, str]]:
    """(phrase, matched words) of every match of ``phrases`` in ``text``."""
    tokens = tokenize(text)
    matcher = PhraseMatcher((parse_phrase(source), source) for source in phrases)
    return [(m.key, " ".join(t.text for t in tokens[m.start : m.end])) for m in matcher.find_all(tokens)]


def test_tokens_are_lower_case_words_and_marks_and_hyphens_separate_words():
    tokens = tokenize("Ground-glass  OPACITY; r/o PNA? A-V block")
    assert [t.text for t in tokens] == ["ground", "glass", "opacity", ";", "r", "/", "o", "pna", "?", "a", "v", "block"]
    assert [t.is_word for t in tokens][:4] == [True, True, True, False]


def test_words_prefixes_alternatives_and_gaps():
    assert spans(["pleural effusion"], "Small Pleural  Effusion.") == [("pleural effusion", "pleural effusion")]
    assert spans(["opacit*"], "opacity, opacities and opacification") == [
        ("opacit*", "opacity"),
        ("opacit*", "opacities"),
    ]
    assert spans(["enlarged|increased heart"], "an increased heart") == [
        ("enlarged|increased heart", "increased heart")
    ]
    assert spans(["heart ~3 enlarged"], "the heart size is mildly enlarged") == [
        ("heart ~3 enlarged", "heart size is mildly enlarged")
    ]
    assert spans(["heart ~2 enlarged"], "the heart size is mildly enlarged") == []  # three words between


def test_a_gap_takes_the_shortest_match_and_stops_at_commas_and_semicolons():
    assert spans(["no ~3 effusion"], "no effusion effusion") == [("no ~3 effusion", "no effusion")]
    assert spans(["heart ~3 normal"], "heart is enlarged, lungs normal") == []
    assert spans(["heart ~3 normal"], "heart enlarged; normal lungs") == []


def test_punctuation_phrases_match_as_report_text_is_tokenized():
    assert spans(["r/o"], "R/O pneumonia") == [("r/o", "r / o")]
    assert spans([": none"], "Pneumothorax: none.") == [(": none", ": none")]
    assert spans(["can't exclude"], "Can't exclude pneumonia") == [("can't exclude", "can ' t exclude")]


def test_prefix_matches_words_only_and_prefix_must_be_a_prefix():
    assert spans(["pac|pacs"], "pacing and pacemaker, frequent PACs") == [("pac|pacs", "pacs")]
    assert spans(["infarct*"], "infarction, infarcts; noninfarcted") == [
        ("infarct*", "infarction"),
        ("infarct*", "infarcts"),
    ]


def test_leftmost_longest_prefers_the_longest_match_at_each_start_and_keeps_ties():
    tokens = tokenize("pneumonia cannot be excluded")
    matcher = PhraseMatcher(
        (parse_phrase(source), kind)
        for source, kind in [("not", "negation"), ("cannot be excluded", "uncertainty"), ("cannot", "other")]
    )
    chosen = leftmost_longest(matcher.find_all(tokens))
    assert [(span.start, span.end, span.keys) for span in chosen] == [(1, 4, frozenset({"uncertainty"}))]
    tied = PhraseMatcher((parse_phrase("versus"), kind) for kind in ("pre", "post"))
    assert leftmost_longest(tied.find_all(tokenize("a versus b")))[0].keys == frozenset({"pre", "post"})


@pytest.mark.parametrize(
    "source,reason",
    [
        ("", "holds no word"),
        ("   ", "holds no word"),
        ("~2 effusion", "a gap must follow a word"),
        ("effusion ~2", "a gap cannot end"),
        ("a ~2 ~2 b", "a gap must follow a word"),
        (f"a ~{MAX_GAP + 1} b", "a gap spans"),
        ("a ~0 b", "a gap spans"),
        ("a ~1 b ~1 c ~1 d", "at most 2 gaps"),
        ("op*", "at least 3 letters"),
        ("*", "at least 3 letters"),
        ("effu.sion*", "at least 3 letters"),
        ("left|right axis|", "empty alternative"),
        ("left|right ventricle|can't", "must be one word"),
        (" ".join(["word"] * 13), "at most 12"),
    ],
)
def test_bad_phrases_are_refused_with_the_reason(source, reason):
    with pytest.raises(PhraseError, match=reason):
        parse_phrase(source)


def test_a_phrase_must_be_text():
    with pytest.raises(PhraseError, match="must be text, got bool"):
        parse_phrase(False)  # YAML reads an unquoted `no` as false
