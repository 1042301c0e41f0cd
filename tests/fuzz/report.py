"""Print the crafted-input figures SECURITY.md reports: ``python -m tests.fuzz.report`` (from the repository root).

Runs every ``tests/fuzz/crafted_*.py`` module (except the harness's self-test) and counts inputs tried, refusals by
reason code, and the outcomes that must be zero: hangs, memory over budget, silent garbage, crashes.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tests.fuzz.crafted import run_crafted

SKIPPED_MODULES = {"crafted_selftest"}


def main() -> int:
    folder = Path(__file__).resolve().parent
    results = []
    for path in sorted(folder.glob("crafted_*.py")):
        if path.stem in SKIPPED_MODULES:
            continue
        module = f"tests.fuzz.{path.stem}"
        with tempfile.TemporaryDirectory() as root:
            results += run_crafted(module, Path(root), importlib.import_module(module).cases)
    outcomes = Counter(result.outcome for result in results)
    reasons = Counter(result.detail for result in results if result.outcome == "ok")
    per_modality = Counter(result.modality for result in results)
    print(f"inputs tried: {len(results)} (" + ", ".join(f"{m}: {n}" for m, n in sorted(per_modality.items())) + ")")
    print("handled as expected, by outcome: " + ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items())))
    for outcome in ("hang", "memory", "garbage", "crash", "wrong_reason"):
        print(f"{outcome}: {outcomes[outcome]}")
    for result in results:
        if result.outcome != "ok":
            print(f"  {result.name}: {result.outcome} ({result.detail})")
    return 0 if outcomes["ok"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
