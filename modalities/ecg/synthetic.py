"""Synthetic ECG-report datasets: simulated 12-lead records, templated reports, rhythm labels, a manifest.

``ECGModality.synthetic`` uses ``synthetic_samples`` (records preprocessed exactly as files would be), and

    python -m modalities.ecg.synthetic --out DIR --n 200

writes a dataset a user can pretrain on from the command line: WFDB records (``DIR/records/*.hea|.dat``), report
files (``DIR/reports/*.txt``), ``DIR/manifest.csv`` with ``patient_id``, ``study_id``, ``ecg``, ``report`` and one
``label:<rhythm>`` column per rhythm (1/0), the columns ``medclip zero-shot`` evaluates, and the matching prompt set
``DIR/ecg_rhythm_prompts.yaml`` (one finding per rhythm, phrased in the reports' words).
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from medclip.registry import lazy_import
from medclip.types import Sample

from .config import ECGConfig
from .leads import STANDARD_LEADS
from .preprocess import preprocess
from .record import RawRecord
from .simulator import RATE_RANGES, RHYTHMS, SimulatedECG, simulate_ecg

RHYTHM_SENTENCES = {  # ways cardiologists phrase each rhythm; {rate} is the ventricular rate
    "sinus_rhythm": ("Normal sinus rhythm at {rate} bpm.", "Sinus rhythm, rate {rate} beats per minute."),
    "sinus_bradycardia": ("Sinus bradycardia at {rate} bpm.", "Sinus bradycardia, rate {rate} beats per minute."),
    "sinus_tachycardia": ("Sinus tachycardia at {rate} bpm.", "Sinus tachycardia, rate {rate} beats per minute."),
    "atrial_fibrillation": (
        "Atrial fibrillation with a ventricular rate of {rate} bpm.",
        "Atrial fibrillation, average ventricular rate {rate} beats per minute.",
    ),
}
IMPRESSIONS = {
    "sinus_rhythm": ("Normal sinus rhythm. Normal ECG.", "Sinus rhythm. No acute abnormality."),
    "sinus_bradycardia": ("Sinus bradycardia.", "Sinus bradycardia, otherwise normal ECG."),
    "sinus_tachycardia": ("Sinus tachycardia.", "Sinus tachycardia, otherwise normal ECG."),
    "atrial_fibrillation": ("Atrial fibrillation.", "Atrial fibrillation, irregularly irregular rhythm."),
}
RHYTHM_PROMPTS = {  # zero-shot phrasings per rhythm (the prompt set's positives and negatives)
    "sinus_rhythm": (
        ["normal sinus rhythm", "sinus rhythm", "normal ECG"],
        ["atrial fibrillation", "sinus tachycardia"],
    ),
    "sinus_bradycardia": (["sinus bradycardia", "slow sinus rhythm"], ["sinus tachycardia", "normal sinus rhythm"]),
    "sinus_tachycardia": (["sinus tachycardia", "fast sinus rhythm"], ["sinus bradycardia", "normal sinus rhythm"]),
    "atrial_fibrillation": (
        ["atrial fibrillation", "irregularly irregular rhythm without P waves"],
        ["normal sinus rhythm", "regular sinus rhythm"],
    ),
}
PROMPTS_FILE = "ecg_rhythm_prompts.yaml"
SYNTHETIC_UNITS_PER_MV = 1000.0  # WFDB gain: 1 microvolt per stored step, as most 12-lead exports use


@dataclass(frozen=True)
class SyntheticECG:
    """A simulated record with its report (label = ``simulated.rhythm``)."""

    simulated: SimulatedECG
    report: str


def write_report(ecg: SimulatedECG, rng: random.Random) -> str:
    """A templated FINDINGS / IMPRESSION report stating rhythm, rate and intervals."""
    rate = round(ecg.heart_rate)
    findings = [rng.choice(RHYTHM_SENTENCES[ecg.rhythm]).format(rate=rate)]
    if ecg.rhythm == "atrial_fibrillation":
        findings.append(rng.choice(("No discernible P waves.", "Irregularly irregular RR intervals without P waves.")))
        if rate > 100:
            findings.append("Rapid ventricular response.")
    else:
        findings.append(f"PR interval {ecg.pr_ms} ms.")
    findings.append(f"QRS duration {ecg.qrs_ms} ms. QT/QTc {ecg.qt_ms}/{ecg.qtc_ms} ms.")
    findings.append(rng.choice(("Normal axis.", "Normal QRS axis.", "Axis within normal limits.")))
    impression = rng.choice(IMPRESSIONS[ecg.rhythm])
    return f"FINDINGS:\n{' '.join(findings)}\n\nIMPRESSION:\n{impression}"


def generate_ecgs(n: int, seed: int = 0, sampling_rate: float = 500.0, seconds: float = 10.0) -> list[SyntheticECG]:
    """``n`` seeded records with reports; rhythms cycle so every rhythm is represented in small sets."""
    rng = np.random.default_rng(seed)
    text_rng = random.Random(seed)
    order = list(RHYTHMS)
    records = []
    for index in range(n):
        if index % len(order) == 0:
            text_rng.shuffle(order)
        rhythm = order[index % len(order)]
        rate = rng.uniform(*RATE_RANGES[rhythm])
        simulated = simulate_ecg(rhythm, rate, rng, sampling_rate=sampling_rate, seconds=seconds)
        records.append(SyntheticECG(simulated, write_report(simulated, text_rng)))
    return records


def as_raw_record(ecg: SimulatedECG) -> RawRecord:
    return RawRecord(
        signal=ecg.signal,
        channel_names=list(STANDARD_LEADS),
        units=["mV"] * len(STANDARD_LEADS),
        sampling_rate=ecg.sampling_rate,
        source_format="synthetic",
    )


def synthetic_samples(cfg: ECGConfig, n: int, seed: int = 0, name: str = "ecg") -> list[Sample]:
    """``n`` samples as ``ECGModality.load`` returns them (simulated at 500 Hz, then the plugin's preprocessing)."""
    samples = []
    for record in generate_ecgs(n, seed, seconds=max(cfg.seconds, cfg.min_seconds)):
        signal, meta = preprocess(as_raw_record(record.simulated), cfg)
        samples.append({name: signal, f"{name}_meta": meta})
    return samples


def write_dataset(out: str | Path, n: int, seed: int = 0, sampling_rate: float = 500.0, seconds: float = 10.0) -> Path:
    """Write WFDB records, report files, ``manifest.csv`` and the prompt set under ``out``; returns the manifest."""
    wfdb = lazy_import("wfdb", "writing synthetic WFDB records")
    out = Path(out)
    (out / "records").mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, record in enumerate(generate_ecgs(n, seed, sampling_rate, seconds)):
        name = f"ecg_{index:05d}"
        wfdb.wrsamp(
            name,
            fs=sampling_rate,
            units=["mV"] * len(STANDARD_LEADS),
            sig_name=list(STANDARD_LEADS),
            p_signal=np.ascontiguousarray(record.simulated.signal.T),  # (T, 12), wfdb's layout
            fmt=["16"] * len(STANDARD_LEADS),
            adc_gain=[SYNTHETIC_UNITS_PER_MV] * len(STANDARD_LEADS),
            baseline=[0] * len(STANDARD_LEADS),
            write_dir=str(out / "records"),
        )
        (out / "reports" / f"{name}.txt").write_text(record.report + "\n", encoding="utf-8")
        labels = {f"label:{rhythm}": int(record.simulated.rhythm == rhythm) for rhythm in RHYTHMS}
        rows.append(
            {
                "patient_id": f"synthetic-{index:05d}",
                "study_id": name,
                "ecg": f"records/{name}.hea",
                "report": f"reports/{name}.txt",
                **labels,
            }
        )
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_prompt_set(out / PROMPTS_FILE)
    return manifest


def write_prompt_set(path: str | Path) -> Path:
    """The zero-shot prompt set for the synthetic rhythms (finding names = the manifest's label columns)."""
    findings = {
        rhythm: {"positive": positive, "negative": negative} for rhythm, (positive, negative) in RHYTHM_PROMPTS.items()
    }
    data = {
        "name": "ecg_rhythms",
        "description": "cardiac rhythms of the synthetic ECG-report set, phrased as its reports phrase them",
        "templates": ["{}.", "impression: {}.", "findings: {}."],
        "findings": findings,
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modalities.ecg.synthetic",
        description="Write a synthetic ECG-report dataset (WFDB records, reports, rhythm labels, manifest.csv).",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=200, help="number of records (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampling-rate", type=float, default=500.0, help="Hz of the written records (default 500)")
    parser.add_argument("--seconds", type=float, default=10.0, help="record length (default 10)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    manifest = write_dataset(args.out, args.n, args.seed, args.sampling_rate, args.seconds)
    print(f"wrote {args.n} records, reports, {manifest} and {manifest.parent / PROMPTS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
