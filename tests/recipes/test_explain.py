"""``medclip explain`` end to end: a tiny CT (NIfTI, written with nibabel) + report model, maps written from the CLI.

The checkpoint is a real one: CT <-> report pretraining for two steps on phantom chests (``write_phantom_dataset``
writes NIfTI volumes and report files). The maps of an untrained model mean nothing; what is checked is the run: one
PNG per (row, phrase) named by row number, ``explain.json`` with the scores and regions, no identifier anywhere, and
the refusals.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from medclip import config
from medclip.cli import main as cli
from medclip.explain import ExplainError
from modalities.ct.phantom import write_phantom_dataset
from recipes.explain import Config, main

pytestmark = pytest.mark.usefixtures("one_thread")

CT_OPTIONS = ["modalities.ct.size=[16,16,16]", "modalities.ct.spacing=[24.0,24.0,21.0]",
              "modalities.ct.patch_size=[8,8,8]", "modalities.ct.hu_windows=[lung]"]  # fmt: skip
REPORT_OPTIONS = ["modalities.report.width=32", "modalities.report.layers=1", "modalities.report.heads=2",
                  "modalities.report.max_tokens=48", "modalities.report.vocab_size=200"]  # fmt: skip


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, manifest): six phantom studies, CT ViT (a 2x2x2 patch grid) <-> report, two training steps."""
    from recipes.pretrain import Config as PretrainConfig
    from recipes.pretrain import pretrain

    folder = tmp_path_factory.mktemp("explain")
    manifest = write_phantom_dataset(folder / "data", n=6, shape=(24, 24, 16), spacing=(16, 16, 21))
    overrides = [*CT_OPTIONS, *REPORT_OPTIONS, f"data.manifest={manifest}", f"out={folder / 'run'}",
                 "model.embed_dim=16", "train.steps=2", "train.batch_size=3", "train.warmup_steps=1",
                 "train.progress=false", "data.val_fraction=0.0", "data.test_fraction=0.0",
                 "data.min_val_patients=0"]  # fmt: skip
    data = {"modalities": {"ct": {}, "report": {}}}
    result = pretrain(config.build(PretrainConfig, config.apply_overrides(data, overrides)))
    return result.checkpoint, manifest


@pytest.mark.slow
def test_cli_writes_one_map_per_row_and_phrase_without_identifiers(ct_run, tmp_path):
    checkpoint, manifest = ct_run
    out = tmp_path / "maps"
    code = cli(["explain", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--modality", "ct",
                "--phrase", "left lower lobe nodule", "--phrase", "pleural effusion, small", "--rows", "1,3",
                "--out", str(out), "progress=false"])  # fmt: skip
    assert code == 0
    names = sorted(path.name for path in out.glob("*.png"))
    assert names == [f"row{row:05d}_phrase{phrase:02d}.png" for row in (1, 3) for phrase in (1, 2)]
    for name in names:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 50
    record = json.loads((out / "explain.json").read_text())
    assert record["rows"] == [1, 3] and record["phrases"] == ["left lower lobe nodule", "pleural effusion, small"]
    assert record["phrase_embedding"] == "pooled"
    assert len(record["maps"]) == 4
    for entry in record["maps"]:
        assert -1.0 <= entry["mean_score"] <= entry["max_score"] <= 1.0
        region = entry["top_region"]
        assert 0 <= region["token"] < 8 and len(region["cell"]) == 3  # 16^3 voxels in 8^3 patches
        assert all(0 <= start < stop <= 16 for start, stop in zip(region["start"], region["stop"], strict=True))
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    text = (out / "explain.json").read_text()
    for identifier in [*table["patient_id"], *table["study_id"], *(Path(cell).name for cell in table["ct"])]:
        assert identifier not in text and not any(identifier in name for name in names)


@pytest.mark.slow
def test_split_and_limit_pick_the_first_rows(ct_run, tmp_path):
    checkpoint, manifest = ct_run
    cfg = Config(checkpoint=str(checkpoint), manifest=str(manifest), modality="ct", phrases=["nodule"],
                 split="all", limit=2, out=str(tmp_path), progress=False)  # fmt: skip
    metrics = main(cfg)
    assert metrics["n_rows"] == 2 and metrics["n_maps"] == 2
    assert json.loads((tmp_path / "explain.json").read_text())["rows"] == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"modality": "report"}, ExplainError, "is text"),
        ({"modality": "wsi"}, ExplainError, "no modality 'wsi'"),
        ({"phrases": []}, config.ConfigError, "at least one phrase"),
        ({"rows": [99]}, config.ConfigError, "rows [99]"),
    ],
)
def test_refusals_name_the_problem(ct_run, tmp_path, changes, error, words):
    checkpoint, manifest = ct_run
    fields = {"checkpoint": str(checkpoint), "manifest": str(manifest), "modality": "ct", "phrases": ["nodule"],
              "out": str(tmp_path), "progress": False}  # fmt: skip
    with pytest.raises(error, match=None) as raised:
        main(Config(**{**fields, **changes}))
    assert words in str(raised.value)


def test_command_line_options_become_config_fields():
    """``--phrase`` repeats into ``phrases`` (commas kept), ``--rows`` takes commas, ``key=value`` still works."""
    from medclip.cli import _flag_overrides, _recipe_flags, build_parser
    from recipes import explain

    argv = ["-v", "explain", "--checkpoint", "ck", "--phrase", "nodule, left lower lobe", "--rows", "1,5",
            "--phrase=effusion", "--out", "maps", "limit=3"]  # fmt: skip
    rest, flags = _recipe_flags(argv, build_parser())
    assert rest == ["-v", "explain", "--out", "maps", "limit=3"]
    cfg = config.load(Config, None, [*_flag_overrides(explain, flags), "limit=3"])
    assert cfg.checkpoint == "ck" and cfg.rows == [1, 5] and cfg.limit == 3
    assert cfg.phrases == ["nodule, left lower lobe", "effusion"]
    with pytest.raises(config.ConfigError, match="unknown option --modalty"):
        _flag_overrides(explain, [("--modalty", "ct")])
    with pytest.raises(config.ConfigError, match="given 2 times"):
        _flag_overrides(explain, [("--modality", "ct"), ("--modality", "ecg")])


@pytest.mark.slow
def test_ecg_maps_from_wfdb_records(tmp_path):
    """ECG (WFDB records written with wfdb) <-> report, two steps: one map per row, regions in seconds."""
    from recipes.pretrain import Config as PretrainConfig
    from recipes.pretrain import pretrain
    from tests.modalities.ecg.writers import sine_leads, write_wfdb

    folder = tmp_path / "data"
    (folder / "ecg").mkdir(parents=True)
    reports = ["Sinus rhythm.", "Atrial fibrillation.", "ST elevation in V2.", "Left bundle branch block.",
               "Sinus tachycardia.", "Normal ECG."]  # fmt: skip
    rows = []
    for index, report in enumerate(reports):
        signal = sine_leads(12, 4.0, 250.0) * (1.0 + 0.1 * index)  # (T, 12) mV
        write_wfdb(folder / "ecg", f"rec{index}", signal, rate=250.0)
        rows.append({"patient_id": f"P{index}", "ecg": f"ecg/rec{index}.hea", "report": report})
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    ecg = ["modalities.ecg.encoder=vit1d", "modalities.ecg.width=32", "modalities.ecg.depth=1",
           "modalities.ecg.heads=2", "modalities.ecg.sampling_rate=100.0", "modalities.ecg.seconds=4.0",
           "modalities.ecg.min_seconds=2.0", "modalities.ecg.patch_seconds=0.4"]  # fmt: skip
    overrides = [*ecg, *REPORT_OPTIONS, f"data.manifest={manifest}", f"out={tmp_path / 'run'}", "model.embed_dim=16",
                 "train.steps=2", "train.batch_size=3", "train.warmup_steps=1", "train.progress=false",
                 "data.val_fraction=0.0", "data.test_fraction=0.0", "data.min_val_patients=0"]  # fmt: skip
    data = {"modalities": {"ecg": {}, "report": {}}}
    checkpoint = pretrain(config.build(PretrainConfig, config.apply_overrides(data, overrides))).checkpoint
    out = tmp_path / "maps"
    metrics = main(Config(checkpoint=str(checkpoint), manifest=str(manifest), modality="ecg", phrases=["ST elevation"],
                          rows=[2, 4], out=str(out), progress=False))  # fmt: skip
    assert metrics["n_maps"] == 2
    assert sorted(path.name for path in out.glob("*.png")) == ["row00002_phrase01.png", "row00004_phrase01.png"]
    record = json.loads((out / "explain.json").read_text())
    for entry in record["maps"]:
        start, stop = entry["top_region"]["seconds"]
        assert 0.0 <= start < stop <= 4.0 and stop - start == pytest.approx(0.4)
    assert not any(f"P{index}" in (out / "explain.json").read_text() for index in range(6))
