"""Print the labeller's precision / recall / F1 on the held-out sets, as docs/labeller.md shows them.

    .venv/bin/python -m tests.modalities.report.labeller_scores [--errors]

``--errors`` also lists the disagreements (finding, hand label, labeller) with their counts: counts only, the reports
are in the held-out modules.
"""

from __future__ import annotations

import sys
from types import ModuleType

from modalities.report.labeller import ReportLabeller, load_vocabulary
from modalities.report.labeller.evaluation import Evaluation, evaluate, markdown_table
from tests.modalities.report import heldout_chest_ct, heldout_chest_xray, heldout_ecg

HELD_OUT: dict[str, ModuleType] = {"chest_xray": heldout_chest_xray, "chest_ct": heldout_chest_ct, "ecg": heldout_ecg}


def score(vocabulary: str) -> Evaluation:
    """The bundled ``vocabulary`` scored on its held-out reports."""
    return evaluate(ReportLabeller(load_vocabulary(vocabulary)), HELD_OUT[vocabulary].REPORTS)


def main(argv: list[str]) -> None:
    for vocabulary in HELD_OUT:
        result = score(vocabulary)
        print(f"### {vocabulary}: {result.reports} reports, macro F1 {result.macro_f1:.3f}\n")
        print(markdown_table(result), "\n")
        if "--errors" in argv:
            for (finding, truth, found), count in sorted(result.confusions.items()):
                print(f"- {finding}: hand {truth}, labeller {found} ({count})")
            print()


if __name__ == "__main__":
    main(sys.argv[1:])
