"""Crafted report inputs (issue 14): special files named as reports, files and inline text over ``max_chars``, text
that is not UTF-8 or not text, and long inline reports built to make de-identification and sentence splitting
backtrack (runs of word characters, dots, hyphens, abbreviations, labels without values), which must load within a
few seconds."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fuzz.crafted import LOADS, Crafted
from tests.modalities.report.deid_examples import RULE_EXAMPLES

NEAR_MAX = 190_000  # below the default max_chars (200,000): these must be processed, and fast
LONG_SECONDS = 60.0  # budget for loading and transforming one near-maximal report on a busy 2-core machine


def _fifo(path: Path) -> Path:
    if not path.exists():
        os.mkfifo(path)
    return path


def _link(path: Path, target: str) -> Path:
    if not path.is_symlink():
        path.symlink_to(target)
    return path


def _repeated(unit: str, size: int = NEAR_MAX) -> str:
    return "FINDINGS: " + (unit * (size // len(unit) + 1))[:size]


def cases(root: Path) -> list[Crafted]:
    found: list[Crafted] = []
    (root / "good.txt").write_text("FINDINGS: Clear lungs. IMPRESSION: Normal.")
    found.append(Crafted("report_good_file", "report", "good.txt", (LOADS,)))

    # --- special files and sizes -----------------------------------------------------------------------------------
    _fifo(root / "fifo.txt")
    found.append(Crafted("report_fifo_txt", "report", "fifo.txt", ("not_regular_file",), seconds=10))
    _fifo(root / "fifo.md")
    found.append(Crafted("report_fifo_md", "report", "fifo.md", ("not_regular_file",), seconds=10))
    _link(root / "zero.txt", "/dev/zero")
    found.append(Crafted("report_dev_zero", "report", "zero.txt", ("not_regular_file",), seconds=10))
    _link(root / "urandom.md", "/dev/urandom")
    found.append(Crafted("report_dev_urandom", "report", "urandom.md", ("not_regular_file",), seconds=10))
    (root / "folder.txt").mkdir(exist_ok=True)
    found.append(Crafted("report_folder", "report", "folder.txt", ("not_regular_file",)))
    with open(root / "sparse.txt", "wb") as handle:
        handle.truncate(4 * 10**9)  # 4 GB that take no disk space: refused from the size alone
    found.append(Crafted("report_4gb_file", "report", "sparse.txt", ("too_large",)))
    found.append(Crafted("report_inline_over_max_chars", "report", _repeated("No effusion. ", 300_000), ("too_large",)))
    (root / "latin1.txt").write_bytes("FINDINGS: café".encode("latin-1"))
    found.append(Crafted("report_latin1_file", "report", "latin1.txt", ("not_utf8",)))
    (root / "nul.txt").write_bytes(b"FINDINGS: clear\x00\x01")
    found.append(Crafted("report_binary_file", "report", "nul.txt", ("binary_file",)))

    # --- near-maximal reports built to backtrack: they load, in linear time ----------------------------------------
    adversarial = {
        "word_characters": "a" * 64 + "_",  # the e-mail rule took 15 s for 64 KB of these
        "one_letter_words": "a ",
        "dots": ".",
        "hyphens": "-",
        "hyphenated_capitals": "Ab-",
        "abbreviations": "Dr. ",  # sentence splitting sliced the sentence so far at every dot
        "address_labels": "Address: 1.",
        "id_labels": "MRN.",
        "digits_and_spaces": "7 ",
        "mask_character": "Roe \uffff, 98. ",
    }
    for label, unit in adversarial.items():
        expected = ("empty_report",) if label in ("dots", "hyphens") else (LOADS,)  # nothing to keep, but fast
        found.append(Crafted(f"report_{label}", "report", _repeated(unit), expected, seconds=LONG_SECONDS))
    mixture = " ".join(example[:-1] for example in RULE_EXAMPLES.values()) + " "
    found.append(
        Crafted("report_near_misses_of_every_rule", "report", _repeated(mixture), (LOADS,), seconds=LONG_SECONDS)
    )
    return found
