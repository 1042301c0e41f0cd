"""``medclip pretrain`` with composed batches, end to end on the quickstart's real data (pbmc68k_reduced):
hard-negative training resumes exactly (2 steps, stop, resume == 4 steps straight, across a refresh), same_site
training reads the manifest's ``site`` column, and a resume that would change the composition is refused."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from medclip.checkpoint import MODEL_FILE
from medclip.train.batching.hard_negative import TABLE_FILE
from medclip.train.state import OPTIMIZER_FILE, TRAINER_STATE_FILE
from recipes.pretrain import pretrain

pytestmark = pytest.mark.slow

HARD = [
    "train.batching.kind=hard_negative",
    "train.batching.refresh_every=3",  # refreshes at steps 0 and 3: the resumed run loads one table, builds the next
    "train.batching.candidates=8",
    "train.batching.neighbours_per_seed=3",
]


def test_hard_negative_training_resumes_exactly_across_a_refresh(small_experiment, tmp_path):
    straight = pretrain(small_experiment("train.steps=4", *HARD, out=tmp_path / "straight"))
    stopped = pretrain(small_experiment("train.steps=4", "train.stop_at=2", *HARD, out=tmp_path / "stopped"))
    state = json.loads((stopped.checkpoint / TRAINER_STATE_FILE).read_text())["batching"]
    assert state["kind"] == "hard_negative" and state["has_table"] and state["refreshed_at_step"] == 0
    table = load_file(str(stopped.checkpoint / TABLE_FILE))["neighbours"]
    assert table.shape == (len(stopped.splits["train"]), 8) and int(table.min()) >= -1
    resumed = pretrain(
        small_experiment("train.steps=4", *HARD, f"train.resume={stopped.checkpoint}", out=tmp_path / "resumed")
    )
    for name in (MODEL_FILE, OPTIMIZER_FILE, TABLE_FILE):
        a, b = load_file(str(straight.checkpoint / name)), load_file(str(resumed.checkpoint / name))
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"
    final = json.loads((resumed.checkpoint / TRAINER_STATE_FILE).read_text())["batching"]
    assert (final["refresh_number"], final["refreshed_at_step"], final["table_start"]) == (1, 3, 3)

    with pytest.raises(ValueError, match="composed hard_negative batches"):  # a resume must not change composition
        pretrain(small_experiment("train.steps=6", f"train.resume={straight.checkpoint}", out=tmp_path / "other"))


def test_same_site_training_reads_the_site_column(pbmc_manifest, small_experiment, tmp_path):
    table = pd.read_csv(pbmc_manifest)
    table["site"] = ["scanner-a" if index % 3 else "scanner-b" for index in range(len(table))]
    table.loc[:5, "site"] = "one-off"  # a site smaller than a batch: merged (mixed group) or skipped, and counted
    manifest = pbmc_manifest.parent / "manifest_with_sites.csv"
    table.to_csv(manifest, index=False)
    result = pretrain(
        small_experiment(
            "train.steps=2", "train.batching.kind=same_site", "train.batching.small_sites=skip",
            f"data.manifest={manifest}", out=tmp_path / "sites",
        )
    )  # fmt: skip
    state = json.loads((result.checkpoint / TRAINER_STATE_FILE).read_text())["batching"]
    assert state["kind"] == "same_site" and result.metrics["loss"] > 0
