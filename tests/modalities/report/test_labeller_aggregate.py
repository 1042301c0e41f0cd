"""CheXpert's aggregation over mentions, the uncertainty policies and the "no finding" label."""

from __future__ import annotations

import pytest

from modalities.report.labeller import (
    NEGATIVE,
    NOT_MENTIONED,
    POSITIVE,
    UNCERTAIN,
    ReportLabeller,
    finding_state,
    label_value,
    load_vocabulary,
    no_finding_state,
)


@pytest.mark.parametrize(
    "statuses,expected",
    [
        ([], NOT_MENTIONED),
        ([NEGATIVE], NEGATIVE),
        ([NEGATIVE, UNCERTAIN], UNCERTAIN),
        ([UNCERTAIN, NEGATIVE, POSITIVE], POSITIVE),  # any positive mention wins
        ([NEGATIVE, NEGATIVE], NEGATIVE),
    ],
)
def test_finding_state_follows_chexpert_precedence(statuses, expected):
    assert finding_state(statuses) == expected


@pytest.mark.parametrize(
    "policy,expected",
    [("blank", None), ("1", 1), ("0", 0)],  # U-Ignore, U-Ones, U-Zeros
)
def test_uncertainty_policies(policy, expected):
    assert label_value(UNCERTAIN, policy) == expected
    assert (label_value(POSITIVE, policy), label_value(NEGATIVE, policy), label_value(NOT_MENTIONED, policy)) == (
        1,
        0,
        None,
    )


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="uncertain policy must be one of blank, 1, 0"):
        label_value(UNCERTAIN, "ones")


def test_no_finding_ignores_support_devices_and_respects_uncertainty():
    assert no_finding_state({"a": NEGATIVE, "b": NOT_MENTIONED}) == POSITIVE
    assert no_finding_state({"a": UNCERTAIN, "b": NEGATIVE}) == UNCERTAIN
    assert no_finding_state({"a": UNCERTAIN, "b": POSITIVE}) == NEGATIVE
    assert no_finding_state({"devices": POSITIVE, "b": NEGATIVE}, ignore=["devices"]) == POSITIVE


def test_labels_of_a_report_with_each_policy():
    labeller = ReportLabeller(load_vocabulary("chest_xray"))
    text = (
        "FINDINGS: No effusion on the left. Small right pleural effusion. Possible right lower lobe pneumonia. "
        "Endotracheal tube in place.\nIMPRESSION: No pneumothorax."
    )
    labels = labeller.labels(text)
    assert labels["pleural effusion"] == 1  # one positive mention among negative ones
    assert labels["pneumothorax"] == 0
    assert labels["pneumonia"] is None and labeller.labels(text, uncertain="1")["pneumonia"] == 1
    assert labeller.labels(text, uncertain="0")["pneumonia"] == 0
    assert labels["edema"] is None  # not mentioned stays blank under every policy
    assert labeller.labels(text, uncertain="0")["edema"] is None
    assert labels["no finding"] == 0 and labels["support devices"] == 1
    assert list(labels) == labeller.vocabulary.label_names
    quiet = labeller.labels("FINDINGS: Endotracheal tube in place. No pneumothorax.")
    assert quiet["no finding"] == 1  # support devices do not count against "no finding"
    with pytest.raises(ValueError, match="uncertain policy"):
        labeller.labels(text, uncertain="u-ones")
