"""The bundled vocabularies on held-out reports written for the test and labelled by hand (see the heldout_* modules).

Floors, not targets: the figures measured when the held-out sets were first scored are in docs/labeller.md
(``python -m tests.modalities.report.labeller_scores``); a change to the rules or vocabularies that drops below a floor
is a regression. The floors sit a little under the measured values so that a deliberate trade-off stays possible.
"""

from __future__ import annotations

import pytest

from modalities.report.labeller import NEGATIVE, POSITIVE, ReportLabeller, load_vocabulary
from modalities.report.labeller.evaluation import hand_states
from tests.modalities.report.labeller_scores import HELD_OUT, score

MACRO_F1_FLOOR = 0.85  # the floor
MICRO_FLOOR = 0.85  # pooled precision and recall of positive and negative labels


@pytest.mark.parametrize("vocabulary", sorted(HELD_OUT))
def test_held_out_sets_are_large_varied_and_labelled_with_valid_names(vocabulary):
    reports = HELD_OUT[vocabulary].REPORTS
    labeller = ReportLabeller(load_vocabulary(vocabulary))
    assert len(reports) >= 60
    assert len({text for text, _ in reports}) == len(reports)  # no repeated report
    states = [hand_states(labels, labeller) for _, labels in reports]  # raises on an unknown finding or value
    counts = {
        state: sum(list(row.values()).count(state) for row in states) for state in (POSITIVE, NEGATIVE, "uncertain")
    }
    assert counts[POSITIVE] >= 40 and counts[NEGATIVE] >= 20 and counts["uncertain"] >= 5


@pytest.mark.parametrize("vocabulary", sorted(HELD_OUT))
def test_labeller_meets_the_floor_on_held_out_reports(vocabulary):
    result = score(vocabulary)
    assert result.macro_f1 >= MACRO_F1_FLOOR, f"{vocabulary}: macro F1 {result.macro_f1:.3f}"
    for state in (POSITIVE, NEGATIVE):
        pooled = result.micro(state)
        assert pooled.precision >= MICRO_FLOOR and pooled.recall >= MICRO_FLOOR, (vocabulary, state, pooled)


@pytest.mark.parametrize("vocabulary", sorted(HELD_OUT))
def test_docs_show_the_current_figures(vocabulary):
    """docs/labeller.md shows the table this code measures (python -m tests.modalities.report.labeller_scores)."""
    from pathlib import Path

    from modalities.report.labeller.evaluation import markdown_table

    docs = (Path(__file__).resolve().parents[3] / "docs" / "labeller.md").read_text()
    result = score(vocabulary)
    assert markdown_table(result) in docs
    assert f"| `{vocabulary}` | {result.reports} |" in docs and f"{result.macro_f1:.3f} |\n" in docs
