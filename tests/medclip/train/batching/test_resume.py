"""Resume at the composer level: the state written into a checkpoint folder (``trainer_state`` entry + the table
file) restores the exact batch sequence mid-epoch / mid-pass, and a damaged or mismatched state is refused."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from medclip.checkpoint import CheckpointError
from medclip.train.batching import BatchingConfig, RowFacts, build_batching
from medclip.train.batching.hard_negative import TABLE_FILE
from medclip.train.batching.neighbours import nearest_neighbours
from tests.medclip.train.batching.rows import report_rows
from tests.medclip.train.batching.test_hard_negative import ROWS, planted_embeddings

SITES = ["a"] * 30 + ["b"] * 20 + ["c"] * 14


def save(composer, folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    composer.writer(lambda staging: (staging / "trainer_state.json").write_text(json.dumps(composer.state_dict())))(
        folder
    )


def restore(config, rows, folder, batch_size=8):
    composer = build_batching(config, rows, batch_size=batch_size, seed=9)
    composer.load_state_dict(json.loads((folder / "trainer_state.json").read_text()), folder)
    return composer


@pytest.mark.parametrize("kind", ["random", "same_site", "site_stratified"])
def test_epoch_kinds_resume_mid_epoch(kind, tmp_path):
    rows, config = report_rows(SITES), BatchingConfig(kind=kind)
    composer = build_batching(config, rows, batch_size=8, seed=9)
    straight = list(itertools.islice(composer.batches(0), 20))
    save(composer, tmp_path)
    resumed = restore(config, rows, tmp_path)
    assert list(itertools.islice(resumed.batches(5), 15)) == straight[5:]  # 5 = mid-epoch (7 batches per epoch)


def hard_negative_composer(rows, config):
    composer = build_batching(config, rows, batch_size=8, seed=9)
    embeddings, present, _ = planted_embeddings()
    facts = RowFacts.of(rows)
    composer.use_table(nearest_neighbours(embeddings, present, facts.patient_codes(), None, 4), step=3, consumed=3)
    return composer


def test_hard_negative_resumes_mid_pass_from_the_saved_table(tmp_path):
    rows = report_rows([None] * ROWS)
    config = BatchingConfig(kind="hard_negative", candidates=4, neighbours_per_seed=1)
    composer = hard_negative_composer(rows, config)
    straight = list(itertools.islice(composer.batches(3), 20))  # from the refresh on, over two passes of 8 batches
    save(composer, tmp_path)
    assert (tmp_path / TABLE_FILE).is_file()
    resumed = restore(config, rows, tmp_path)
    assert torch.equal(resumed.table, composer.table)
    assert list(itertools.islice(resumed.batches(8), 15)) == straight[5:]
    assert not resumed.refresh_due(4) and resumed.refresh_due(100)  # every refresh_every steps from start_after


def test_a_damaged_or_mismatched_state_is_refused(tmp_path):
    rows = report_rows([None] * ROWS)
    config = BatchingConfig(kind="hard_negative", candidates=4)
    save(hard_negative_composer(rows, config), tmp_path)
    with pytest.raises(ValueError, match="composed hard_negative batches"):
        restore(BatchingConfig(kind="random"), rows, tmp_path)
    with pytest.raises(ValueError, match="training rows differ"):
        restore(config, report_rows([None] * (ROWS + 1)), tmp_path)
    with pytest.raises(CheckpointError, match="candidates"):
        restore(BatchingConfig(kind="hard_negative", candidates=6), rows, tmp_path)
    (tmp_path / TABLE_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="unreadable"):
        restore(config, rows, tmp_path)


def test_site_kinds_need_manifest_rows():
    dataset = torch.utils.data.TensorDataset(torch.zeros(32, 2))
    with pytest.raises(TypeError, match="ManifestDataset"):
        build_batching(BatchingConfig(kind="same_site"), dataset, batch_size=8)
    assert len(next(build_batching(BatchingConfig(), dataset, batch_size=8).batches(0))) == 8  # random needs nothing
