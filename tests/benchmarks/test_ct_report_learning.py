"""``benchmarks/ct_report_learning.py``: its data are what they claim, and a tiny run produces the table; so does
``benchmarks/ct_report_ceilings.py`` (each tower trained alone on the labels) on the same data.

The data check regenerates each patient from its seed and compares it with the file medclip's ct plugin reads back
(NIfTI and DICOM halves alike), then checks every label against the planted lesion: present exactly when labelled,
at the density its finding has, and visible against the brain around it.
"""

from __future__ import annotations

import csv
import importlib.util
import sys

import numpy as np
import pytest

from tests.paths import REPOSITORY

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("nilearn") is None, reason="needs nilearn (pip install nilearn)"),
]
sys.path.insert(0, str(REPOSITORY / "benchmarks"))

from ct_report_ceilings import main as ceilings  # noqa: E402
from ct_report_data import FINDING_HU, FINDINGS, head_case, head_report, load_head_anatomy  # noqa: E402
from ct_report_learning import main as benchmark  # noqa: E402

PATIENTS = 16


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("ct_report_learning")
    overrides = ["train.batch_size=4", "train.val_every=0", "train.warmup_steps=0", "data.min_val_patients=1"]
    result = benchmark(["--work", str(work), "--patients", str(PATIENTS), "--steps", "2", "--arms", "head", "--set",
                        *overrides])  # fmt: skip
    return work, result


def test_the_run_prints_the_table_with_every_column(run):
    _, result = run
    (row,) = result["rows"]
    assert row["arm"] == "head" and row["steps"] == 2
    for split in ("train", "val", "test"):
        assert 0.0 <= row[f"{split}_R@1"] <= 1.0
        assert 0.0 < row[f"{split}_chance"] <= 1.0
    assert set(row["auroc"]) == set(FINDINGS)
    assert set(row["probe"]) == {"ct", "report"}  # the last validation's label probes (None where not measurable)
    assert all(value is None or 0.0 <= value <= 1.0 for value in row["probe"].values())
    lines = result["table"].splitlines()
    assert lines[0].startswith("| arm | steps") and "test R@1 (chance)" in lines[0]
    assert lines[2].startswith("| head | 2 ") and lines[3].startswith("| HU-histogram logistic regression |")
    assert set(result["baseline"]) == set(FINDINGS)


def test_half_nifti_half_dicom_load_through_the_ct_plugin_as_generated(run):
    from medclip.factory import build_modalities

    work, _ = run
    data = work / f"data_{PATIENTS}"
    rows = list(csv.DictReader((data / "manifest.csv").open()))
    assert len(rows) == PATIENTS and len({row["patient_id"] for row in rows}) == PATIENTS
    assert {row["split"] for row in rows} == {"train", "val", "test"}
    sources = [row["ct"].split("/")[0] for row in rows]
    assert sources.count("volumes") == sources.count("dicom") == PATIENTS // 2
    ct = build_modalities({"ct": {}})["ct"]
    anatomy = load_head_anatomy()
    planted = dict.fromkeys(FINDINGS, 0)
    for index, row in enumerate(rows):
        sample = ct.load(str(data / row["ct"]))
        assert sample["ct_meta"]["source"] == ("nifti" if index % 2 == 0 else "dicom")
        case = head_case(anatomy, index)  # seed 0: case seed = index
        loaded = np.asarray(sample["ct"])
        assert np.array_equal(loaded, case.hounsfield)  # what was planted is what medclip reads
        brain = (loaded > 0) & (loaded < 50)
        for finding in FINDINGS:
            label = int(row[f"label:{finding}"])
            assert label == int(case.findings[finding]) == int(finding in case.masks)
            if not label:
                continue
            planted[finding] += 1
            lesion = loaded[case.masks[finding]].astype(float)
            low, high = FINDING_HU[finding]
            assert low - 10 <= lesion.mean() <= high + 10  # calibration offset <= 8 HU, noise averages out
            contrast = lesion.mean() - np.median(loaded[brain & ~case.masks[finding]])
            assert contrast > 20 if finding != "infarct" else contrast < -10
        report = (data / row["report"]).read_text()
        assert report == head_report(case, index)
    assert all(count > 0 for count in planted.values()), planted


def test_reports_name_present_findings_and_negate_absent_ones():
    anatomy = load_head_anatomy()
    words = {"nodule": "nodul", "haemorrhage": ("haemorrhage", "haematoma", "bleed"), "infarct": "infarct"}
    for seed in range(12):
        case = head_case(anatomy, seed)
        report = head_report(case, seed).lower()
        for finding in FINDINGS:
            if case.findings[finding]:
                assert any(word in report for word in np.atleast_1d(words[finding]))
                assert case.details[finding]["side"] in report
            elif any(word in report for word in np.atleast_1d(words[finding])):
                sentence = next(s for s in report.split(".") if any(w in s for w in np.atleast_1d(words[finding])))
                assert "no " in sentence  # only ever mentioned negated


def test_the_ceilings_train_every_tower_alone_on_the_same_data(run):
    work, _ = run
    result = ceilings(["--work", str(work), "--patients", str(PATIENTS), "--steps", "2", "--towers", "0", "2"])
    report, resnet = result["results"]
    assert report["tower"].startswith("report") and "histogram" not in report
    assert resnet["tower"] == "CT ResNet, head 6 mm" and len(resnet["histogram"]) == len(FINDINGS)
    for row in (report, resnet):
        assert row["steps"] == 2 and len(row["held_out"]) == len(row["train"]) == len(FINDINGS)
        assert all(np.isnan(value) or 0.0 <= value <= 1.0 for value in row["held_out"] + row["train"])
    lines = result["table"].splitlines()
    assert len(lines) == 4 and all(line.count("|") == lines[0].count("|") for line in lines)
