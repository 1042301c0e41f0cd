"""Synthetic chest CT reports: templated FINDINGS / IMPRESSION text with varied, seeded findings.

They look like real reports on purpose (headers in several spellings, preamble sections, decimals, abbreviations,
numbered impressions) so that tests and ``--data synthetic`` runs exercise section extraction and sentence splitting
the way institutional data will. No real patient text is used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
NORMAL_SENTENCES = {  # organ -> ways radiologists phrase "normal"
    "lungs": (
        "The lungs are clear without focal consolidation.",
        "No focal airspace opacity.",
        "Lungs are clear bilaterally.",
    ),
    "pleura": ("No pleural effusion or pneumothorax.", "No effusion. No pneumothorax.", "Pleural spaces are clear."),
    "heart": (
        "Heart size is normal. No pericardial effusion.",
        "The cardiac silhouette is within normal limits.",
        "Normal heart size.",
    ),
    "mediastinum": (
        "The mediastinal and hilar contours are within normal limits.",
        "No mediastinal or hilar lymphadenopathy.",
    ),
    "bones": (
        "Osseous structures are unremarkable.",
        "No acute osseous abnormality.",
        "Mild degenerative changes of the spine.",
    ),
}


def _nodule(rng: random.Random) -> tuple[str, str, str]:
    size, lobe = round(rng.uniform(0.4, 2.8), 1), rng.choice(LOBES)
    kind = rng.choice(("solid", "part-solid", "ground-glass"))
    months = 3 if size >= 1.5 else rng.choice((6, 12))
    return (
        "lungs",
        f"A {size} cm {kind} nodule is seen in the {lobe}, e.g. on series 3 image 45.",
        f"{size} cm {kind} pulmonary nodule in the {lobe}. Follow-up CT in {months} months is recommended.",
    )


def _effusion(rng: random.Random) -> tuple[str, str, str]:
    size, side = rng.choice(("Small", "Moderate", "Large")), rng.choice(("left", "right", "bilateral"))
    plural = "s" if side == "bilateral" else ""
    return (
        "pleura",
        f"{size} {side} pleural effusion{plural} with adjacent compressive atelectasis.",
        f"{size} {side} pleural effusion{plural}.",
    )


def _consolidation(rng: random.Random) -> tuple[str, str, str]:
    lobe = rng.choice(LOBES)
    return (
        "lungs",
        f"Consolidation with air bronchograms in the {lobe}.",
        f"Consolidation in the {lobe}, compatible with pneumonia in the appropriate clinical setting.",
    )


def _pneumothorax(rng: random.Random) -> tuple[str, str, str]:
    side, depth = rng.choice(("left", "right")), round(rng.uniform(0.5, 3.5), 1)
    return (
        "pleura",
        f"A {side} apical pneumothorax measures {depth} cm in depth.",
        f"{side.capitalize()} pneumothorax, approx. {depth} cm.",
    )


def _cardiomegaly(rng: random.Random) -> tuple[str, str, str]:
    ratio = round(rng.uniform(0.55, 0.68), 2)
    return (
        "heart",
        f"The heart is enlarged with a cardiothoracic ratio of {ratio}. No pericardial effusion.",
        "Cardiomegaly.",
    )


def _lymphadenopathy(rng: random.Random) -> tuple[str, str, str]:
    now, before = round(rng.uniform(1.1, 2.4), 1), round(rng.uniform(0.8, 1.0), 1)
    station = rng.choice(("subcarinal", "right paratracheal", "left hilar"))
    return (
        "mediastinum",
        f"Enlarged {station} lymph node measuring {now} cm vs. {before} cm previously.",
        f"Enlarging {station} lymphadenopathy.",
    )


def _emphysema(rng: random.Random) -> tuple[str, str, str]:
    grade = rng.choice(("Mild", "Moderate", "Severe"))
    return ("lungs", f"{grade} centrilobular emphysema, upper lobe predominant.", f"{grade} emphysema.")


FINDINGS = {
    "nodule": _nodule,
    "effusion": _effusion,
    "consolidation": _consolidation,
    "pneumothorax": _pneumothorax,
    "cardiomegaly": _cardiomegaly,
    "lymphadenopathy": _lymphadenopathy,
    "emphysema": _emphysema,
}
HISTORIES = ("Cough and fever.", "Shortness of breath.", "Follow-up of known nodule.", "Chest pain.", "Staging.")
FINDINGS_HEADERS = ("FINDINGS:", "Findings:", "FINDINGS")
IMPRESSION_HEADERS = ("IMPRESSION:", "Impression:", "CONCLUSION:")


@dataclass(frozen=True)
class SyntheticReport:
    """A synthetic report and the findings it describes (usable as labels in demos)."""

    text: str
    findings: tuple[str, ...]


def generate_reports(n: int, seed: int = 0) -> list[SyntheticReport]:
    """``n`` seeded chest CT reports, each with zero to two abnormal findings."""
    rng = random.Random(seed)
    reports = []
    for _ in range(n):
        chosen = rng.sample(sorted(FINDINGS), k=rng.choice((0, 1, 1, 2)))
        described = [FINDINGS[name](rng) for name in chosen]
        abnormal_organs = {organ for organ, _, _ in described}
        findings = [sentence for _, sentence, _ in described]
        findings += [rng.choice(options) for organ, options in NORMAL_SENTENCES.items() if organ not in abnormal_organs]
        impressions = [impression for _, _, impression in described] or ["No acute cardiopulmonary abnormality."]
        if len(impressions) > 1:
            impressions = [f"{number}. {text}" for number, text in enumerate(impressions, start=1)]
        findings_text = " ".join(findings) if rng.random() < 0.5 else "\n".join(findings)
        text = "\n".join(
            [
                "EXAMINATION: CT CHEST " + rng.choice(("WITH CONTRAST", "WITHOUT CONTRAST")),
                f"HISTORY: {rng.choice(HISTORIES)}",
                "TECHNIQUE: Axial images at 1.25 mm with coronal and sagittal reformats.",
                "",
                rng.choice(FINDINGS_HEADERS),
                findings_text,
                "",
                rng.choice(IMPRESSION_HEADERS),
                "\n".join(impressions),
            ]
        )
        reports.append(SyntheticReport(text=text, findings=tuple(chosen)))
    return reports
