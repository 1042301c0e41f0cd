"""Negation and uncertainty with scope, on sentences written for these tests (not the held-out sets).

Each case is (text, finding, expected state) with the bundled vocabularies, so a regression in the trigger lists or
in the scope rules shows up as one named sentence.
"""

from __future__ import annotations

import pytest

from modalities.report.labeller import NEGATIVE, NOT_MENTIONED, POSITIVE, UNCERTAIN, ReportLabeller, load_vocabulary


@pytest.fixture(scope="module")
def chest_xray() -> ReportLabeller:
    return ReportLabeller(load_vocabulary("chest_xray"))


@pytest.fixture(scope="module")
def chest_ct() -> ReportLabeller:
    return ReportLabeller(load_vocabulary("chest_ct"))


@pytest.fixture(scope="module")
def ecg() -> ReportLabeller:
    return ReportLabeller(load_vocabulary("ecg"))


NEGATION_SCOPE = [
    # pre-negation reaches along a list
    ("No pneumothorax.", "pneumothorax", NEGATIVE),
    ("There is no evidence of pleural effusion.", "pleural effusion", NEGATIVE),
    ("No focal airspace consolidation, pleural effusion, or pneumothorax.", "pneumothorax", NEGATIVE),
    ("Lungs are clear without consolidation or effusion.", "pleural effusion", NEGATIVE),
    # ... but not past a termination, a sentence end, or its word budget
    ("No pneumothorax but there is a small effusion.", "pleural effusion", POSITIVE),
    ("No pneumothorax; small left effusion.", "pleural effusion", POSITIVE),
    ("No pneumothorax, however the effusion has enlarged.", "pleural effusion", POSITIVE),
    ("No pneumothorax. Small left effusion.", "pleural effusion", POSITIVE),
    ("No pneumothorax, small left pleural effusion.", "pleural effusion", POSITIVE),
    (
        "No acute bony abnormality is seen in the visualized portions of the chest with an effusion.",
        "pleural effusion",
        POSITIVE,
    ),
    # post-negation, and its stop at a comma
    ("Pneumothorax is not seen.", "pneumothorax", NEGATIVE),
    ("The pleural effusion has resolved.", "pleural effusion", NEGATIVE),
    ("Pneumothorax: none.", "pneumothorax", NEGATIVE),
    ("Lungs: No consolidation or edema.", "edema", NEGATIVE),  # ": no" is a pre-trigger too
    ("Effusions: none. Pneumothorax: no.", "pneumothorax", NEGATIVE),
    ("Left basilar consolidation, effusion not seen.", "consolidation", POSITIVE),
    ("Left basilar consolidation, effusion not seen.", "pleural effusion", NEGATIVE),
    # a negation inside a mention with a gap
    ("The heart is not enlarged.", "cardiomegaly", NEGATIVE),
    ("The heart is enlarged.", "cardiomegaly", POSITIVE),
    # pseudo-negations are not negations, and end an earlier trigger's reach
    ("No change in the small left pleural effusion.", "pleural effusion", POSITIVE),
    ("No significant interval change in bibasilar atelectasis.", "atelectasis", POSITIVE),
    ("No pneumothorax, no change in atelectasis.", "atelectasis", POSITIVE),
    # removal and resolution
    ("Interval removal of the endotracheal tube.", "support devices", NEGATIVE),
    ("The chest tube has been removed.", "support devices", NEGATIVE),
    ("Resolution of the right upper lobe pneumonia.", "pneumonia", NEGATIVE),
    ("Resolving right upper lobe pneumonia.", "pneumonia", POSITIVE),
]

UNCERTAINTY = [
    ("Possible small left pleural effusion.", "pleural effusion", UNCERTAIN),
    ("Pneumonia cannot be excluded.", "pneumonia", UNCERTAIN),  # not the negation "not"
    ("Cannot exclude pneumonia.", "pneumonia", UNCERTAIN),
    ("Pneumonia is not excluded.", "pneumonia", UNCERTAIN),
    ("Opacity which may represent atelectasis.", "atelectasis", UNCERTAIN),
    ("Opacity which may represent atelectasis.", "lung opacity", POSITIVE),  # the hedge is about what follows
    ("Atelectasis versus pneumonia.", "atelectasis", UNCERTAIN),  # "versus" hedges both sides
    ("Atelectasis versus pneumonia.", "pneumonia", UNCERTAIN),
    ("Findings concerning for pneumonia.", "pneumonia", UNCERTAIN),
    ("Pneumothorax?", "pneumothorax", UNCERTAIN),
    ("Heart size is borderline enlarged.", "cardiomegaly", UNCERTAIN),
    ("No definite pneumothorax, but a small one cannot be excluded at the apex.", "pneumothorax", NEGATIVE),
]

NORMAL_AND_EXCLUDED = [
    ("Heart size is normal.", "cardiomegaly", NEGATIVE),
    ("Normal heart size.", "cardiomegaly", NEGATIVE),
    ("Heart size is probably normal.", "cardiomegaly", UNCERTAIN),
    ("Small pericardial effusion.", "pleural effusion", NOT_MENTIONED),  # excluded: not a pleural effusion
    ("Soft tissue edema of the chest wall.", "edema", NOT_MENTIONED),
    ("Subcutaneous edema of the chest wall.", "edema", NOT_MENTIONED),
    ("Top normal heart size.", "cardiomegaly", NEGATIVE),
    ("Compression collapse of a vertebral body.", "atelectasis", POSITIVE),  # "body collapse" needs adjacency
    ("Vertebral body collapse.", "atelectasis", NOT_MENTIONED),
]

SECTIONS = [
    (
        "INDICATION: Rule out pneumonia.\nFINDINGS: Lungs are clear.\nIMPRESSION: Normal chest.",
        "pneumonia",
        NOT_MENTIONED,
    ),
    ("HISTORY: Pneumothorax.\nIMPRESSION: No pneumothorax.", "pneumothorax", NEGATIVE),
    ("Rule out pneumonia.", "pneumonia", UNCERTAIN),  # no headers: the whole text counts
]


@pytest.mark.parametrize("text,finding,expected", NEGATION_SCOPE + UNCERTAINTY + NORMAL_AND_EXCLUDED + SECTIONS)
def test_chest_xray_sentences(chest_xray, text, finding, expected):
    assert chest_xray.states(text)[finding] == expected


@pytest.mark.parametrize(
    "text,finding,expected",
    [
        ("Subcutaneous emphysema in the chest wall.", "emphysema", NOT_MENTIONED),
        ("Soft tissue emphysema in the chest wall.", "emphysema", NOT_MENTIONED),
        ("Centrilobular emphysema.", "emphysema", POSITIVE),
        ("Opacification of the left lower lobe.", "lung opacity", POSITIVE),
        ("Small paraesophageal hernia.", "hiatal hernia", POSITIVE),
        ("No pleural or pericardial effusion.", "pleural effusion", NEGATIVE),
        ("No pleural or pericardial effusion.", "pericardial effusion", NEGATIVE),
        ("A 5 mm ground-glass nodule.", "lung opacity", NOT_MENTIONED),
        ("A 5 mm ground-glass nodule.", "pulmonary nodule", POSITIVE),
        ("Calcification of the coronary arteries.", "coronary artery wall calcification", POSITIVE),
        ("Calcification of the coronary arteries.", "arterial wall calcification", NOT_MENTIONED),
        ("Aortic valve calcification.", "arterial wall calcification", NOT_MENTIONED),
        ("Atherosclerotic disease of the thoracic aorta.", "arterial wall calcification", POSITIVE),
        ("Mediastinal lymph nodes are not enlarged.", "lymphadenopathy", NEGATIVE),
    ],
)
def test_chest_ct_sentences(chest_ct, text, finding, expected):
    assert chest_ct.states(text)[finding] == expected


@pytest.mark.parametrize(
    "text,finding,expected",
    [
        ("Right bundle branch block.", "right bundle branch block", POSITIVE),
        ("Right bundle branch block.", "left bundle branch block", NOT_MENTIONED),
        ("Incomplete right bundle branch block.", "right bundle branch block", NOT_MENTIONED),
        ("No bundle branch block.", "left bundle branch block", NEGATIVE),
        ("Frequent PACs.", "premature atrial complexes", POSITIVE),
        ("Frequent PACs.", "paced rhythm", NOT_MENTIONED),  # "pac" is not a prefix of "paced"
        ("Atrial pacing.", "premature atrial complexes", NOT_MENTIONED),
        ("Septal infarct, age undetermined.", "myocardial infarction", POSITIVE),
        ("Cannot rule out anterior infarct.", "myocardial infarction", UNCERTAIN),
        ("Minimal voltage criteria for LVH, may be normal variant.", "left ventricular hypertrophy", UNCERTAIN),
        ("Atrial fibrillation has been replaced by sinus rhythm.", "atrial fibrillation", NEGATIVE),
        ("Sinus rhythm has been replaced by atrial fibrillation.", "atrial fibrillation", POSITIVE),
        ("No ST-T changes.", "t wave abnormality", NEGATIVE),
        ("Nonspecific ST-T changes.", "t wave abnormality", POSITIVE),
    ],
)
def test_ecg_statements(ecg, text, finding, expected):
    assert ecg.states(text)[finding] == expected


def test_mentions_report_positions_and_phrases_but_no_text(chest_xray):
    mentions = chest_xray.mentions("FINDINGS: Small effusion. No pneumothorax.")
    assert [(m.finding, m.status, m.sentence, m.phrase) for m in mentions] == [
        ("pleural effusion", POSITIVE, 0, "effusion*"),
        ("pneumothorax", NEGATIVE, 1, "pneumothora*"),
    ]
    assert (mentions[0].start, mentions[0].end) == (1, 2)


def test_sections_are_configurable(chest_xray):
    everything = ReportLabeller(chest_xray.vocabulary, sections=())
    text = "HISTORY: Pneumothorax.\nIMPRESSION: Clear lungs."
    assert chest_xray.states(text)["pneumothorax"] == NOT_MENTIONED
    assert everything.states(text)["pneumothorax"] == POSITIVE
