"""Sentence splitting for radiology reports: sentences are the "tokens" of sentence-level (fine-grained) losses.

A full sentence segmenter (spaCy, NLTK punkt) would be a heavy dependency with models to download; report language
is regular enough for rules. A sentence ends at ``.``, ``!`` or ``?`` followed by white space, except:

- decimals and dotted abbreviations never match, because the dot is not followed by white space ("3.5 cm");
- after an abbreviation that never ends a sentence ("Dr.", "vs.", "e.g.", "approx.", "cf.");
- after an abbreviation that rarely ends one ("etc.", "min.", "post.") when the next word starts in lower case;
- after "No." / "Fig." / "Vol." followed by a number ("No. 3");
- after a list enumerator at the start of a sentence ("1. Small nodule." is one sentence, not "1." + "Small ...").

Line structure matters too: a blank line or a list item ("1.", "2)", "-", "•") always starts a new sentence, and a
line break starts one when the next line begins with a capital and the previous one does not end mid-phrase (comma,
semicolon, colon, hyphen, open bracket); other line breaks are wrapping inside a sentence.
"""

from __future__ import annotations

import re

# Abbreviations (lower case, without the final dot) that never end a sentence.
ALWAYS_ABBREVIATIONS = frozenset(
    {"dr", "mr", "mrs", "ms", "prof", "st", "vs", "v", "cf", "approx", "appr", "incl", "esp", "resp", "al", "ca", "pt"}
)
# Abbreviations that end a sentence only when a capitalised word follows ("... etc. No effusion.").
LOWERCASE_FOLLOWER_ABBREVIATIONS = frozenset(
    {"etc", "min", "max", "sec", "mo", "yr", "yrs", "ant", "post", "lat", "sup", "inf", "med", "ext", "int", "prox"}
)
# Abbreviations that precede a number ("No. 3", "Fig. 2").
NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "fig", "figs", "vol", "p", "pp", "ser", "img", "im"})

_DOTTED_ABBREVIATION = re.compile(r"(?:[a-z]\.)+[a-z]")  # e.g, i.e, a.m (the final dot is the candidate end)
# Tried only where a run of end marks starts: from every position inside a long run of dots it was quadratic.
_CANDIDATE_END = re.compile(r"(?<![.!?])[.!?]+[\"')\]]*(?=\s+\S)")
_NON_SPACE = re.compile(r"\S")
_LIST_ITEM = re.compile(r"^(?:\(?\d{1,2}[.)]|[-*\u2022\u2023\u25e6])\s+")
_ENUMERATOR = re.compile(r"\d{1,2}")
_MID_PHRASE_END = re.compile(r"[,;:(\[-]$")
_HAS_CONTENT = re.compile(r"\w")


def _blocks(text: str) -> list[str]:
    """Join wrapped lines; break at blank lines, list items and capitalised lines after a finished phrase."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            if current:
                blocks.append(" ".join(current))
            current = []
            continue
        starts_new = _LIST_ITEM.match(line) is not None or (
            bool(current) and line[0].isupper() and not _MID_PHRASE_END.search(current[-1])
        )
        if starts_new and current:
            blocks.append(" ".join(current))
            current = []
        current.append(line)
    if current:
        blocks.append(" ".join(current))
    return blocks


def _is_abbreviation(word: str, next_word: str, is_first_word: bool) -> bool:
    """Whether the dot after ``word`` is part of an abbreviation or enumerator rather than a sentence end."""
    bare = word.lower().lstrip("([\"'")
    if bare in ALWAYS_ABBREVIATIONS or _DOTTED_ABBREVIATION.fullmatch(bare):
        return True
    if bare in LOWERCASE_FOLLOWER_ABBREVIATIONS and next_word[:1].islower():
        return True
    if bare in NUMBER_ABBREVIATIONS and next_word[:1].isdigit():
        return True
    return is_first_word and _ENUMERATOR.fullmatch(bare) is not None


def _split_block(block: str) -> list[str]:
    """Split one block at its sentence ends, in time linear in the block's length.

    Each candidate end looks only at the word just before it (scanned back to the previous white space) and the first
    character after it; slicing the sentence so far or the rest of the block at every candidate was quadratic on a
    run of abbreviations ("Dr. Dr. Dr. ...").
    """
    sentences: list[str] = []
    start = 0
    first = _first_non_space(block, start)  # where the current sentence's first word starts
    for match in _CANDIDATE_END.finditer(block):
        if match.group().startswith(".") and not any(mark in match.group() for mark in "!?"):
            word_start, word_end = _word_start(block, match.start(), start)
            if word_start < word_end:
                word = block[word_start:word_end]
                following = _first_non_space(block, match.end())
                next_char = block[following : following + 1]
                if _is_abbreviation(word, next_char, word_start == first):
                    continue
        sentences.append(block[start : match.end()].strip())
        start = match.end()
        first = _first_non_space(block, start)
    sentences.append(block[start:].strip())
    return sentences


def _word_start(block: str, end: int, floor: int) -> tuple[int, int]:
    """(start, end) of the last white-space-delimited word before ``end`` and not before ``floor`` (empty when
    there is none), as ``block[floor:end].split()[-1]`` would give it."""
    while end > floor and block[end - 1].isspace():
        end -= 1
    position = end
    while position > floor and not block[position - 1].isspace():
        position -= 1
    return position, end


def _first_non_space(block: str, position: int) -> int:
    match = _NON_SPACE.search(block, position)
    return match.start() if match else len(block)


def split_sentences(text: str) -> list[str]:
    """Split report text into sentences, list enumerators removed; pieces without letters or digits are skipped.

    Skipped pieces are separators ("---", a lone bullet): they carry no content, so dropping them loses nothing.
    """
    sentences = []
    for block in _blocks(text):
        for sentence in _split_block(block):
            sentence = _LIST_ITEM.sub("", sentence).strip()
            if _HAS_CONTENT.search(sentence):
                sentences.append(sentence)
    return sentences
