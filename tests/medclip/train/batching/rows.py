"""Training rows for the composition tests: a real manifest (inline report text, so no file is needed) read by the
real ``Manifest`` and ``ManifestDataset``, with the sites, patients and findings a test asks for."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from medclip.data import ManifestDataset
from medclip.data.manifest import Manifest
from medclip.factory import build_modalities


def report_rows(
    sites: Sequence[str | None], patients: Sequence[str] | None = None, findings: np.ndarray | None = None
) -> ManifestDataset:
    """One row per entry of ``sites``; patients default to one per row; ``findings``: (N, K) 1 / 0 / NaN."""
    patients = list(patients) if patients is not None else [f"patient-{index}" for index in range(len(sites))]
    table = pd.DataFrame(
        {
            "patient_id": patients,
            "report": [f"report number {index}" for index in range(len(sites))],
            "site": ["" if site is None else site for site in sites],
        }
    )
    if findings is not None:
        for column in range(findings.shape[1]):
            table[f"label:finding{column}"] = ["" if np.isnan(v) else int(v) for v in findings[:, column]]
    manifest = Manifest.from_dataframe(table, ["report"])
    return ManifestDataset(manifest, build_modalities({"report": {}}))
