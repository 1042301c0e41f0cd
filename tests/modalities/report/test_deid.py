"""Report de-identification: measured recall on the annotated test set, clinical content kept, plugin wiring."""

from __future__ import annotations

import json

import pytest

from modalities.report import Deidentifier, ReportConfig, ReportModality, deidentify
from modalities.report.deid import PLACEHOLDERS
from modalities.report.deid_eval import parse_annotated, read_corpus, score_corpus
from tests.paths import TEST_DATA

CORPUS = sorted((TEST_DATA / "deid").glob("*.txt"))
SMALL = {"width": 32, "layers": 1, "heads": 2, "dropout": 0.0, "max_tokens": 64, "vocab_size": 300}


@pytest.fixture(scope="module")
def reports():
    return read_corpus(CORPUS)


@pytest.fixture(scope="module")
def score(reports):
    return score_corpus(reports)


# --- the measured test set --------------------------------------------------------------------------------------------
def test_test_set_has_every_identifier_type(reports):
    assert len(reports) >= 90
    counts = {kind: sum(kind == phi[2] for report in reports for phi in report.phi) for kind in PLACEHOLDERS}
    for kind in ("NAME", "DATE", "ID", "PHONE", "EMAIL", "ADDRESS", "AGE"):
        assert counts[kind] >= 10, (kind, counts)
    assert sum(len(report.keep) for report in reports) >= 300


@pytest.mark.parametrize("kind", [kind for kind in PLACEHOLDERS if kind != "URL"])
def test_recall_per_type_at_least_95_percent(score, kind):
    item = score.per_type[kind]
    missed = [miss for miss in score.missed if miss[1] == kind]
    assert item.recall >= 0.95, (kind, item.recall, missed)


def test_precision_and_clinical_tokens_survive(score):
    overall = score.overall()
    assert overall.precision >= 0.95, score.false_alarms
    assert score.destroyed == []
    assert score.preservation == 1.0


def test_no_planted_identifier_survives_in_the_output(reports):
    """What a user sees: the de-identified text contains no planted value (checked on the text, not on spans)."""
    for report in reports:
        output = deidentify(report.text)
        for start, end, kind in report.phi:
            value = report.text[start:end]
            assert value not in output, (report.title, kind, value)
        for start, end in report.keep:
            assert report.text[start:end] in output, (report.title, report.text[start:end])


def test_idempotent_on_the_whole_test_set(reports):
    for report in reports:
        once = deidentify(report.text)
        assert deidentify(once) == once, report.title


def test_corpus_parser_rejects_broken_annotation():
    parsed = parse_annotated("Seen by Dr. <NAME>Jane Roe</NAME> on <DATE>1/2/2023</DATE>, <KEEP>3 cm</KEEP>.")
    assert parsed.text == "Seen by Dr. Jane Roe on 1/2/2023, 3 cm."
    assert [parsed.text[start:end] for start, end, _ in parsed.phi] == ["Jane Roe", "1/2/2023"]
    assert [parsed.text[start:end] for start, end in parsed.keep] == ["3 cm"]
    with pytest.raises(ValueError, match="not closed"):
        parse_annotated("Seen by <NAME>Jane Roe")


# --- behaviour on single sentences ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dictated by: Jane Roe, MD", "Dictated by: [NAME], MD"),
        (
            "Electronically signed by Omar Haddad, MD on 01/02/2023 08:14",
            "Electronically signed by [NAME], MD on [DATE]",
        ),
        ("Patient: DOE^JANE  MRN: 1234567", "Patient: [NAME]  MRN: [ID]"),
        ("Discussed with Dr. O'Neill at 617-555-0143.", "Discussed with Dr. [NAME] at [PHONE]."),
        ("Exam 2023-01-02, prior Jan 2, 2023 and 2 January 2023.", "Exam [DATE], prior [DATE] and [DATE]."),
        ("Accession: CT-2023-0045512", "Accession: [ID]"),
        ("Write to jane.roe@example.org or 12 Oak Lane, Springfield, IL 62704.", "Write to [EMAIL] or [ADDRESS]."),
        ("A 93-year-old man.", "A [AGE]-year-old man."),
        ("A 67-year-old man.", "A 67-year-old man."),
    ],
)
def test_examples(text, expected):
    assert deidentify(text) == expected


CLINICAL = [
    "A 3.5 cm mass in the right upper lobe.",
    "Sagittal T2 and STIR images; disc bulge at L4/5 and C5-C6.",
    "Monocytes are CD14+ and CD16-. ST elevation in V1-V6 on the 12-lead ECG.",
    "Nodule on image 45 of 120, series 3.",
    "Hemorrhage measures 62 Hounsfield units. Foley catheter in place. Known Parkinson disease.",
    "Addison Disease. Graves' disease. Bell's palsy. Sister Mary Joseph nodule. Kerley B lines.",
    "Gleason 4+3=7, pT3a N1b, HER2 3+, Ki-67 15%, BRCA1. c.743G>A in NM_000546.5. COVID-19, SARS-CoV-2.",
    "BP 120/80, strength 5/5, vision 20/20, 2/3 of the lobe, pH 7.35, HbA1c 6.5%, EF 55-60%.",
    "18F-FDG PET, Tc-99m MDP, 1.5T and 3T MRI, S1Q3T3 pattern, QT/QTc 440/470 ms, platelets 250000.",
    "Stable 2019-2020. Follow-up in 3-6 months. Ribs 3-5. Seen by ENT. Reviewed by Radiology.",
    "Caused by Streptococcus Pneumoniae. Discussed with the Emergency Department. Will follow. May be related.",
]


@pytest.mark.parametrize("text", CLINICAL)
def test_clinical_text_is_untouched(text):
    assert deidentify(text) == text


def test_ages_over_89_switch():
    assert deidentify("She is 94 years old.") == "She is [AGE] years old."
    assert deidentify("She is 94 years old.", ages_over_89=False) == "She is 94 years old."
    assert Deidentifier(ages_over_89=False).find("aged 95") == []


def test_found_spans_name_their_rule_and_kind():
    spans = Deidentifier().find("Dictated by: Jane Roe, MD. MRN: 123456.")
    assert [(span.kind, span.rule) for span in spans] == [("NAME", "signature_by"), ("ID", "labelled_id_strong")]


# --- wiring into the report plugin ------------------------------------------------------------------------------------
REPORT = """PATIENT: ROE, JANE   MRN: 00482913   DOB: 03/14/1951
FINDINGS: A 3.5 cm mass in the right upper lobe (series 3 image 45). Discussed with Dr. Okafor at 617-555-0143.
IMPRESSION: Suspicious mass. Foley catheter in place.
Electronically signed by: Jane Whitfield, MD on 01/03/2023"""
PLANTED = ["ROE", "JANE", "00482913", "03/14/1951", "Okafor", "617-555-0143", "Whitfield", "01/03/2023"]


def test_plugin_load_and_transforms_deidentify_by_default(tmp_path):
    modality = ReportModality(ReportConfig(**SMALL))  # the plugin class directly: no scan of every entry point
    assert modality.config.deidentify is True
    path = tmp_path / "report.txt"
    path.write_text(REPORT, encoding="utf-8")
    sample = modality.load(path)
    text = sample["report"]
    for value in PLANTED:
        assert value not in text and value not in json.dumps(sample["report_meta"])
    assert "3.5 cm" in text and "Foley catheter" in text and "series 3 image 45" in text
    assert "Dr. [NAME]" in text and "[PHONE]" in text

    modality.fit([sample, *modality.synthetic(20)])
    vocabulary = json.dumps(modality.preprocess_state())
    assert not any(value.lower() in vocabulary.lower() for value in ("Okafor", "Whitfield", "00482913"))
    # text that never went through load (a prompt, a query) is de-identified by the transform too
    transform = modality.transforms(train=False)
    raw = transform({"report": "Findings discussed with Dr. Okafor on 01/03/2023."})
    clean = transform({"report": "Findings discussed with Dr. [NAME] on [DATE]."})
    assert raw["report"]["input_ids"].tolist() == clean["report"]["input_ids"].tolist()


def test_plugin_switch_off_keeps_text():
    modality = ReportModality(ReportConfig(**SMALL, deidentify=False))
    text = modality.load("FINDINGS: Discussed with Dr. Okafor on 01/03/2023.")["report"]
    assert "Okafor" in text and "01/03/2023" in text
    assert ReportConfig().deidentify is True and ReportConfig().deidentify_ages_over_89 is True
