"""Does a CT <-> report model learn something that transfers to new patients, on CPU? (issue 13)

    python benchmarks/ct_report_learning.py            # 160 patients, the head arms (25-30 min on a loaded 2-core box)
    python benchmarks/ct_report_learning.py --arms bundled   # the config exactly as shipped (slow on CPU: 150 steps
                                                             # of 64 x 64 x 48 volumes with augmentation)
    python benchmarks/ct_report_learning.py --quick    # 32 patients, 2 arms of 10 steps: a smoke run (a few minutes)

Data (``benchmarks/ct_report_data.py``): head CTs from real anatomy (nilearn's MNI152 template; ``pip install
nilearn``) with planted nodules, haemorrhages and infarcts, half NIfTI and half DICOM series, free-text reports with
varied phrasing and negations, an explicit patient split (70 % train, 15 % val, 15 % test).

Arms: medclip pretraining from the bundled ``recipes/configs/ct_report_pretrain.yaml`` with the overrides each arm
names (``bundled`` is the config exactly as shipped, only pointed at the data), then medclip's own recipes on the
checkpoint the run keeps (``best/`` when validation chose one): ``recipes.retrieval`` (report -> CT Recall@1 on the
train, val and test patients, chance = 1 / patients) and ``recipes.zero_shot`` (binary, a head-CT prompt set written
next to the data, AUROC per finding on the test patients). The ceiling: a logistic regression on each volume's HU
histogram, trained on the train patients, AUROC on the test patients.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ct_report_data import FINDINGS, write_head_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "recipes" / "configs" / "ct_report_pretrain.yaml"
HISTOGRAM_BINS = np.arange(-50.0, 455.0, 5.0)  # HU; brain, blood, calcification; air and most bone fall outside

HEAD_PROMPTS = {
    "name": "head_ct_findings_benchmark",
    "description": "the benchmark's planted head CT findings",
    "templates": ["{}.", "findings: {}.", "impression: {}."],
    "negative_templates": ["{}.", "findings: {}.", "impression: {}."],
    "findings": {
        "nodule": {
            "positive": ["calcified nodule", "dense nodular focus", "punctate hyperdense nodule"],
            "negative": ["no calcified nodule", "no focal nodular lesion", "no dense nodule"],
        },
        "haemorrhage": {
            "positive": ["acute intracranial haemorrhage", "hyperdense haematoma", "intracerebral haemorrhage"],
            "negative": ["no intracranial haemorrhage", "no evidence of haemorrhage", "no acute bleed"],
        },
        "infarct": {
            "positive": ["established infarct", "hypodensity consistent with infarct", "ischaemic infarction"],
            "negative": ["no established infarct", "no focal hypodensity", "no infarct"],
        },
    },
}


@dataclass
class Arm:
    """One pretraining setting: overrides of the bundled config, and whether an MAE pre-stage runs first."""

    name: str
    overrides: list[str] = field(default_factory=list)
    mae_steps: int = 0  # > 0: `medclip mae` for this many steps first, then train.init_from its checkpoint
    loss: dict | None = None  # replaces the config's loss section (a dict cannot be replaced by a key=value override)


# Head CT geometry and windows: what a user changes for a head archive (the bundled config images a chest phantom).
HEAD = [
    "modalities.ct.hu_windows=[brain,'75:215',bone]",  # brain, subdural, bone: blood and infarcts are +-30 HU
    "modalities.ct.spacing=[6.0,6.0,6.0]",
    "modalities.ct.size=[32,40,32]",  # 19 x 24 x 19 cm: the head
    "modalities.ct.patch_size=[8,8,8]",  # 4 x 5 x 4 = 80 tokens of 5 cm: a lesion is not averaged into a 10 cm patch
    "modalities.ct.augment=false",  # random affine costs more than the model's step on a shared 2-core CPU
    "train.steps=100",
]
SOFT_LABEL = {"soft_label": {"weight": 1.0, "temperature": 0.5}}  # MedCLIP: pairs with the same findings are positives
VALIDATED = ["train.val_every=20", "train.early_stopping_patience=3"]
ARMS = {
    "bundled": Arm("bundled"),
    "bundled+val": Arm("bundled+val", VALIDATED),
    "head": Arm("head", HEAD + VALIDATED),
    "head+mae": Arm("head+mae", HEAD + VALIDATED, mae_steps=150),
    "head+soft_label": Arm("head+soft_label", HEAD + VALIDATED, loss=SOFT_LABEL),
    "head+resnet": Arm(  # convolutions see a 2-voxel lesion where a 48 mm ViT patch averages it away
        "head+resnet",
        [*HEAD, *VALIDATED, "modalities.ct.encoder=resnet", "modalities.ct.patch_size=[]", "train.lr=1e-3"],
    ),
    "head+resnet+soft_label": Arm(  # and the findings, not the instance, as the target
        "head+resnet+soft_label",
        [*HEAD, *VALIDATED, "modalities.ct.encoder=resnet", "modalities.ct.patch_size=[]", "train.lr=1e-3"],
        loss=SOFT_LABEL,
    ),
}
QUICK_ARMS = ["bundled", "head"]
FULL_ARMS = ["head", "head+soft_label", "head+resnet", "head+resnet+soft_label", "head+mae"]


def write_prompts(folder: Path) -> Path:
    path = folder / "head_ct_findings.yaml"
    path.write_text(yaml.safe_dump(HEAD_PROMPTS, sort_keys=False))
    return path


def histogram_features(manifest: Path) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Each study's HU histogram, read back through medclip's ct plugin (NIfTI and DICOM alike): (N, bins)."""
    import csv

    from medclip.factory import build_modalities

    ct = build_modalities({"ct": {}})["ct"]
    rows = list(csv.DictReader(manifest.open()))
    features = []
    for row in rows:
        hounsfield = np.asarray(ct.load(str(manifest.parent / row["ct"]))["ct"], dtype=np.float32)
        counts, _ = np.histogram(hounsfield, bins=HISTOGRAM_BINS)
        features.append(np.log1p(counts))
    labels = {finding: np.array([int(row[f"label:{finding}"]) for row in rows]) for finding in FINDINGS}
    return np.stack(features), labels, np.array([row["split"] for row in rows])


def logistic_auroc(features: np.ndarray, labels: np.ndarray, fit: np.ndarray, score: np.ndarray) -> np.ndarray:
    """A standardised, strongly regularised logistic regression per finding, fitted on the ``fit`` rows and scored
    on the ``score`` rows: (K,) AUROC. features (N, F), labels (N, K) 0/1, fit / score (N,) bool."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medclip.eval.metrics import auroc

    scores = []
    for index in range(labels.shape[1]):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
        model.fit(features[fit], labels[fit, index])
        scores.append(model.predict_proba(features[score])[:, 1])
    return auroc(labels[score], np.stack(scores, axis=1))  # (K,)


def histogram_baseline(manifest: Path) -> dict[str, float]:
    """Logistic regression on HU histograms, train patients -> test patients: AUROC per finding (the ceiling)."""
    features, labels, split = histogram_features(manifest)
    matrix = np.stack([labels[finding] for finding in FINDINGS], axis=1)  # (N, K)
    values = logistic_auroc(features, matrix, split == "train", split == "test")
    return {finding: float(value) for finding, value in zip(FINDINGS, values, strict=True)}


def pretrain_config(arm: Arm, manifest: Path, out: Path, cache: Path, steps: int | None, extra: list[str]):
    from medclip.config import load
    from recipes.pretrain import Config

    overrides = [f"data.manifest={manifest}", f"out={out}", f"modalities.ct.cache_dir={cache}", *arm.overrides]
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    return load(Config, BUNDLED, overrides + extra)


def run_mae(arm: Arm, cfg, out: Path) -> Path:
    """The MAE pre-stage on the train patients' volumes, with the pretraining run's CT section and split."""
    from medclip.config import load
    from recipes.mae import Config as MaeConfig
    from recipes.mae import run_mae as mae

    mae_cfg = load(MaeConfig, ROOT / "recipes" / "configs" / "ct_mae.yaml", [f"train.steps={arm.mae_steps}"])
    mae_cfg.modalities = {"ct": dict(cfg.modalities["ct"])}
    mae_cfg.data = cfg.data
    mae_cfg.out = str(out / "mae")
    mae_cfg.figure_volumes = 0
    mae_cfg.val_volumes = 0
    mae_cfg.train.checkpoint_every = 0
    return mae(mae_cfg).checkpoint


def retrieval_r1(checkpoint: Path, manifest: Path, out: Path, split: str) -> tuple[float, float]:
    """report -> CT Recall@1 on one split through recipes.retrieval, and its chance level (1 / patients)."""
    from recipes.retrieval import Config, main

    cfg = Config(
        checkpoint=str(checkpoint), manifest=str(manifest), out=str(out / f"retrieval_{split}"),
        query_modality="report", target_modality="ct", split=split, ks=[1, 5], n_bootstrap=50, n_examples=0,
        allow_seen_patients=split == "train", report_formats=[], progress=False,
    )  # fmt: skip
    summary = main(cfg)
    return summary["report->ct R@1"], 1.0 / summary["evaluated_pairs"]


def zero_shot_auroc(checkpoint: Path, manifest: Path, prompts: Path, out: Path) -> dict[str, float]:
    """Test-patient AUROC per finding through recipes.zero_shot (binary prompts, thresholds on val)."""
    from recipes.zero_shot import Config, main

    cfg = Config(
        checkpoint=str(checkpoint), manifest=str(manifest), out=str(out / "zero_shot"), query_modality="ct",
        text_modality="report", prompts=str(prompts), mode="binary", split="test", n_bootstrap=50,
        report_formats=[], progress=False,
    )  # fmt: skip
    main(cfg)
    result = json.loads((out / "zero_shot" / "metrics.json").read_text())["zero_shot"]
    values = {finding: result["findings"].get(finding, {}).get("auroc", {}).get("value") for finding in FINDINGS}
    return {finding: float("nan") if value is None else float(value) for finding, value in values.items()}


def run_arm(arm: Arm, manifest: Path, prompts: Path, work: Path, steps: int | None, extra: list[str]) -> dict:
    out = work / arm.name
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    cfg = pretrain_config(arm, manifest, out, work / "cache", steps, extra)
    if arm.loss is not None:
        cfg.loss = dict(arm.loss)
    if arm.mae_steps:
        cfg.train.init_from = str(run_mae(arm, cfg, out))
    from recipes.pretrain import pretrain

    result = pretrain(cfg)
    checkpoint = out / "best" if (out / "best").is_dir() else result.checkpoint
    row: dict = {
        "arm": arm.name,
        "steps": int(cfg.train.steps),
        "best": result.best,
        "stopped_early": result.stopped_early,
    }
    for split in ("train", "val", "test"):
        row[f"{split}_R@1"], row[f"{split}_chance"] = retrieval_r1(checkpoint, manifest, out, split)
    row["auroc"] = zero_shot_auroc(checkpoint, manifest, prompts, out)
    # the last validation's label probes (val patients): does each tower carry the findings at all?
    row["probe"] = {name: result.validation.get(f"val/probe/{name}/macro_auroc") for name in ("ct", "report")}
    row["minutes"] = (time.perf_counter() - started) / 60
    return row


def table(rows: list[dict], baseline: dict[str, float]) -> str:
    findings = " | ".join(f"AUROC {finding}" for finding in FINDINGS)
    lines = [
        f"| arm | steps (best) | train R@1 | val R@1 | test R@1 (chance) | {findings} | macro AUROC | "
        "val probe AUROC ct / report | minutes |",
        "|---" * (8 + len(FINDINGS)) + "|",
    ]
    for row in rows:
        aurocs = [row["auroc"][finding] for finding in FINDINGS]
        best = f" ({row['best']['step']})" if row.get("best") else ""
        lines.append(
            f"| {row['arm']} | {row['steps']}{best} | {row['train_R@1']:.3f} | {row['val_R@1']:.3f} | "
            f"{row['test_R@1']:.3f} ({row['test_chance']:.3f}) | "
            + " | ".join(f"{value:.2f}" for value in aurocs)
            + f" | {np.mean(aurocs):.2f} | {_probe_text(row.get('probe', {}))} | {row['minutes']:.1f} |"
        )
    values = [baseline[finding] for finding in FINDINGS]
    lines.append(
        "| HU-histogram logistic regression | - | - | - | - | "
        + " | ".join(f"{value:.2f}" for value in values)
        + f" | {np.mean(values):.2f} | - | - |"
    )
    return "\n".join(lines)


def _probe_text(probe: dict) -> str:
    return " / ".join("-" if probe.get(name) is None else f"{probe[name]:.2f}" for name in ("ct", "report"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 patients, 2 arms of 10 steps: a smoke run")
    parser.add_argument("--work", default="runs/ct_report_learning", help="data, caches and runs go here")
    parser.add_argument("--patients", type=int, default=None, help="default 160 (quick: 32)")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps of every arm (quick: 10)")
    parser.add_argument("--arms", nargs="*", default=None, help=f"of {', '.join(ARMS)}")
    parser.add_argument("--mae-steps", type=int, default=None, help="override the MAE pre-stage's steps")
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value overrides for every arm")
    args = parser.parse_args(argv)
    patients = args.patients or (32 if args.quick else 160)
    steps = args.steps if args.steps is not None else (10 if args.quick else None)
    arms = [ARMS[name] for name in (args.arms or (QUICK_ARMS if args.quick else FULL_ARMS))]
    if args.mae_steps is not None:
        arms = [Arm(arm.name, arm.overrides, args.mae_steps if arm.mae_steps else 0, arm.loss) for arm in arms]
    work = Path(args.work)
    data = work / f"data_{patients}"
    started = time.perf_counter()
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        write_head_dataset(data, n=patients)
    generated = (time.perf_counter() - started) / 60
    prompts = write_prompts(data)
    cached = data / "histogram_baseline.json"  # the data do not change once written
    if not cached.is_file():
        cached.write_text(json.dumps(histogram_baseline(manifest)))
    baseline = json.loads(cached.read_text())
    rows = [run_arm(arm, manifest, prompts, work, steps, list(args.set)) for arm in arms]
    text = table(rows, baseline)
    print(f"\n{patients} patients (data written in {generated:.1f} min)\n{text}")
    result = {"patients": patients, "rows": rows, "baseline": baseline, "table": text}
    (work / "results.json").write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
