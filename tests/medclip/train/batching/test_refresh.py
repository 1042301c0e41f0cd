"""A hard-negative refresh with a real trained model: the table equals an independent brute-force nearest-neighbour
search over ``embed_split``'s embeddings, the model is back in train mode and the RNG states are untouched."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from medclip.embedding import LoaderOptions, embed_split
from medclip.train.batching import BatchingConfig, RowFacts, build_batching
from tests.medclip.train.batching.model_rows import MODALITIES, model_and_training_rows

pytestmark = pytest.mark.slow  # the tiny checkpoint trains first


def brute_force_nearest(rows, patients: np.ndarray) -> np.ndarray:
    """(N,) each row's most similar other-patient row: mean of the two cross-modal cosines, both present."""
    scans, reports = rows.embeddings["expression"], rows.embeddings["report"]  # (N, D) each
    similarity = (scans @ reports.T + reports @ scans.T) / 2  # (N, N)
    similarity[patients[:, None] == patients[None, :]] = -np.inf
    return similarity.argmax(axis=1)


def test_refresh_builds_the_table_of_the_current_model(tiny_checkpoint, pbmc_manifest):
    model, dataset, plugins = model_and_training_rows(tiny_checkpoint, pbmc_manifest)
    config = BatchingConfig(kind="hard_negative", candidates=4, neighbours_per_seed=3)
    composer = build_batching(config, dataset, batch_size=16, seed=0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    composer.refresh(model, plugins, step=0, consumed=0, runtime=None)
    assert model.training, "the refresh must put the model back in train mode"
    assert torch.equal(torch.get_rng_state(), before), "the refresh must not draw from the training RNG"
    assert composer.last_refresh["unreadable_rows"] == 0 and composer.last_refresh["rows"] == len(dataset)

    reference, _ = embed_split(model, dataset, MODALITIES, LoaderOptions(batch_size=64, progress=False))
    position_of = {row: position for position, row in enumerate(dataset.row_numbers())}
    order = np.asarray([position_of[int(row)] for row in reference.row_numbers])
    facts = RowFacts.of(dataset)
    nearest = brute_force_nearest(reference, facts.patient_codes()[order])  # in reference order
    table = composer.table.numpy()
    agree = np.mean([table[order[i], 0] == order[nearest[i]] for i in range(len(order))])
    assert agree > 0.99  # float ties aside, the same neighbours
    # and the batches are built from them: seed + its first free neighbours
    batch = next(itertools.islice(composer.global_batches(0), 1))
    assert batch[1] in table[batch[0]].tolist()
