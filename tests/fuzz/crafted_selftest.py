"""Cases that check the crafted-input harness itself: a good input, an expected refusal, a real hang."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fuzz.crafted import LOADS, Crafted


def cases(root: Path) -> list[Crafted]:
    (root / "good.txt").write_text("No acute findings.")
    fifo = root / "pipe.txt"
    if not fifo.exists():
        os.mkfifo(fifo)
    return [
        Crafted("report_good_file", "report", "good.txt", (LOADS,)),
        Crafted("report_inline", "report", "Mild cardiomegaly.", (LOADS,)),
        Crafted("report_fifo_cell", "report", "pipe.txt", ("not_regular_file",), seconds=5),
        Crafted("report_after_fifo", "report", "good.txt", (LOADS,)),
    ]
