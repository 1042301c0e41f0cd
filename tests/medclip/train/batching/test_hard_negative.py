"""Hard-negative batches: planted nearest neighbours end up in their seed's batch; no batch holds two rows of one
patient, nor (exclude_same_findings) two rows of the same finding vector; an impossible composition fails clearly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from medclip.train.batching import BatchingConfig, RowFacts, build_batching
from medclip.train.batching.neighbours import nearest_neighbours
from tests.medclip.train.batching.rows import report_rows

ROWS = 64
WIDTH = 16


def planted_embeddings(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[int]]:
    """Two modalities; rows 2k and 2k+1 are near twins (each other's nearest cross-modal neighbour).

    Returns embeddings, presence and each row's planted partner.
    """
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(ROWS // 2, WIDTH, generator=generator), dim=1)
    scans = centres.repeat_interleave(2, dim=0) + 0.05 * torch.randn(ROWS, WIDTH, generator=generator)  # (N, D)
    reports = scans + 0.05 * torch.randn(ROWS, WIDTH, generator=generator)  # each row's pair sits near its scan
    embeddings = {"scan": torch.nn.functional.normalize(scans, dim=1),
                  "report": torch.nn.functional.normalize(reports, dim=1)}  # fmt: skip
    present = {name: torch.ones(ROWS, dtype=torch.bool) for name in embeddings}
    return embeddings, present, [row ^ 1 for row in range(ROWS)]


def composer_with_table(patients=None, findings=None, exclude_same_findings=False, batch_size=8, neighbours=1):
    rows = report_rows([None] * ROWS, patients, findings)
    config = BatchingConfig(kind="hard_negative", neighbours_per_seed=neighbours, candidates=4,
                            exclude_same_findings=exclude_same_findings)  # fmt: skip
    composer = build_batching(config, rows, batch_size=batch_size, seed=7)
    facts = RowFacts.of(rows)
    embeddings, present, partner = planted_embeddings()
    codes = facts.finding_codes() if exclude_same_findings else None
    table = nearest_neighbours(embeddings, present, facts.patient_codes(), codes, config.candidates)
    composer.use_table(table, step=0, consumed=0)
    return composer, table, partner, facts


def test_the_table_finds_the_planted_neighbours():
    _, table, partner, _ = composer_with_table()
    assert table[:, 0].tolist() == partner


def test_batches_pair_each_seed_with_its_planted_neighbour():
    composer, _, partner, _ = composer_with_table()
    batches = list(itertools.islice(composer.global_batches(0), ROWS // 8))  # one pass: every row once
    assert sorted(row for batch in batches for row in batch) == list(range(ROWS))
    together = sum(partner[row] in batch for batch in batches for row in batch) / ROWS
    assert together == 1.0  # each seed brings its twin, and the twin is never drawn before its seed
    # under random batches of 8 a row meets its twin with probability 7 / 63
    random = build_batching(BatchingConfig(), composer.dataset, batch_size=8, seed=7)
    shuffled = list(itertools.islice(random.global_batches(0), ROWS // 8))
    assert sum(partner[row] in batch for batch in shuffled for row in batch) / ROWS < 0.5


def test_no_batch_holds_two_rows_of_one_patient():
    patients = [f"patient-{row // 2}" for row in range(ROWS)]  # the planted twins are one patient: a false negative
    composer, table, partner, facts = composer_with_table(patients=patients)
    assert all(partner[row] not in table[row].tolist() for row in range(ROWS))
    codes = facts.patient_codes()
    for batch in itertools.islice(composer.global_batches(0), 40):  # several passes
        assert len({int(codes[row]) for row in batch}) == len(batch) == 8


def test_exclude_same_findings_keeps_identical_finding_vectors_apart():
    findings = np.full((ROWS, 3), np.nan)
    for row in range(ROWS):
        findings[row, row // 2 % 3] = 1.0  # twins share their finding vector
        findings[row, (row // 2 + 1) % 3] = 0.0
    findings[:10] = np.nan  # rows with no known finding never count as "the same findings"
    # only 3 finding vectors + the unknowns: batches of 5 leave room for 3 labelled rows and the unknown ones
    composer, table, partner, facts = composer_with_table(findings=findings, exclude_same_findings=True, batch_size=5)
    codes = facts.finding_codes()
    assert len(set(codes.tolist()) - {-1}) == 3 and (codes[:10] == -1).all()
    for batch in itertools.islice(composer.global_batches(0), 30):
        known = [int(codes[row]) for row in batch if codes[row] >= 0]
        assert len(known) == len(set(known))
    unprotected, _, _, _ = composer_with_table(findings=findings, batch_size=5)
    clashes = 0
    for batch in itertools.islice(unprotected.global_batches(0), 30):
        known = [int(codes[row]) for row in batch if codes[row] >= 0]
        clashes += len(known) - len(set(known))
    assert clashes > 0  # the protection is what keeps them apart


def test_a_batch_that_cannot_be_filled_is_refused_with_a_reason():
    patients = [f"patient-{row % 4}" for row in range(ROWS)]  # 4 patients: no batch of 8 distinct patients
    rows = report_rows([None] * ROWS, patients)
    composer = build_batching(BatchingConfig(kind="hard_negative", candidates=4), rows, batch_size=8)
    composer.use_table(torch.full((ROWS, 4), -1, dtype=torch.int64), step=0, consumed=0)
    with pytest.raises(ValueError, match="cannot fill a batch of 8 rows in which no two rows share a patient"):
        next(composer.global_batches(0))


def test_before_the_first_refresh_batches_are_random_and_refreshes_follow_the_schedule():
    rows = report_rows([None] * ROWS)
    config = BatchingConfig(kind="hard_negative", start_after=5, refresh_every=3, candidates=4)
    composer = build_batching(config, rows, batch_size=8, seed=1)
    random = build_batching(BatchingConfig(), rows, batch_size=8, seed=1)
    assert list(itertools.islice(composer.global_batches(2), 5)) == list(itertools.islice(random.global_batches(2), 5))
    assert [step for step in range(7) if composer.refresh_due(step)] == [5, 6]  # no table yet: due from step 5 on
    composer.use_table(torch.full((ROWS, 4), -1, dtype=torch.int64), step=5, consumed=5)
    assert [step for step in range(12) if composer.refresh_due(step)] == [8, 11]
