"""Site-aware batches: one site per batch (same_site), sites in proportion (site_stratified), small sites counted,
and the default random kind drawing exactly the order of ``ResumableBatchSampler``."""

from __future__ import annotations

import itertools
import logging
from collections import Counter

import pytest

from medclip.config import ConfigError
from medclip.train.batching import BatchingConfig, build_batching
from medclip.train.sampler import ResumableBatchSampler
from tests.medclip.train.batching.rows import report_rows

SITES = ["north"] * 40 + ["south"] * 24 + ["east"] * 12 + ["tiny"] * 5 + [None] * 9  # 90 rows


def first(composer, count: int, start: int = 0) -> list[list[int]]:
    return list(itertools.islice(composer.batches(start), count))


@pytest.fixture(scope="module")
def rows():
    return report_rows(SITES)


def test_same_site_batches_hold_one_site(rows):
    composer = build_batching(BatchingConfig(kind="same_site", small_sites="skip"), rows, batch_size=8, seed=3)
    batches = first(composer, 3 * composer.batches_per_epoch)
    assert composer.batches_per_epoch == 40 // 8 + 24 // 8 + 12 // 8 + 9 // 8  # 5 + 3 + 1 + 1
    for batch in batches:
        assert len(batch) == 8 and len(set(batch)) == 8
        assert len({SITES[i] for i in batch}) == 1
    assert (composer.skipped_sites, composer.skipped_rows) == (1, 5)  # "tiny" is smaller than a batch: counted
    drawn = Counter(SITES[batch[0]] for batch in batches)
    assert drawn["north"] == 15 and drawn["south"] == 9  # sites visited in proportion to their size


def test_small_sites_are_merged_into_one_mixed_group_or_skipped_and_counted(caplog):
    sites = ["big"] * 32 + ["small-a"] * 5 + ["small-b"] * 4  # the two small sites together fill one batch of 8
    rows = report_rows(sites)
    with caplog.at_level(logging.INFO, logger="medclip.train.batching"):
        merged = build_batching(BatchingConfig(kind="same_site", small_sites="merge"), rows, batch_size=8)
    assert merged.merged_sites == 2 and merged.skipped_rows == 0
    mixed = [batch for batch in first(merged, merged.batches_per_epoch) if sites[batch[0]] != "big"]
    assert len(mixed) == 1 and {sites[i] for i in mixed[0]} <= {"small-a", "small-b"}
    assert "2 smaller sites merged" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="medclip.train.batching"):
        skipped = build_batching(BatchingConfig(kind="same_site", small_sites="skip"), rows, batch_size=8)
    assert (skipped.skipped_sites, skipped.skipped_rows) == (2, 9)
    assert all(sites[i] == "big" for batch in first(skipped, 12) for i in batch)
    assert "leave 9 training rows of 2 small sites out of training" in caplog.text


def test_same_site_refuses_when_no_site_fills_a_batch():
    with pytest.raises(ValueError, match="no site .* has 16 training rows"):
        build_batching(BatchingConfig(kind="same_site", small_sites="skip"), report_rows(["a"] * 10 + ["b"] * 10), 16)


def test_site_stratified_batches_mix_the_sites_in_proportion(rows):
    composer = build_batching(BatchingConfig(kind="site_stratified"), rows, batch_size=15, seed=1)
    size = len(SITES)
    shares = {site: count / size for site, count in Counter(SITES).items()}
    for epoch in range(3):
        batches = composer.epoch_batches(epoch)
        assert len(batches) == size // 15
        assert sorted(i for batch in batches for i in batch) == list(range(size))  # 90 rows = 6 full batches
        for batch in batches:
            counts = Counter(SITES[i] for i in batch)
            for site, share in shares.items():
                assert abs(counts[site] - share * 15) <= 1.5, (site, counts[site], share * 15)
    assert composer.epoch_batches(0) != composer.epoch_batches(1)  # a new order every epoch


def test_random_kind_draws_the_order_the_trainer_always_drew(rows):
    for rank in range(2):
        composer = build_batching(BatchingConfig(), rows, batch_size=6, seed=5, rank=rank, world_size=2)
        sampler = ResumableBatchSampler(len(rows), 6, seed=5, rank=rank, world_size=2)
        assert first(composer, 20) == list(itertools.islice(iter(sampler), 20))


@pytest.mark.parametrize("kind", ["random", "same_site", "site_stratified"])
def test_ranks_take_disjoint_slices_of_the_global_batch(rows, kind):
    config = BatchingConfig(kind=kind)
    whole = first(build_batching(config, rows, batch_size=8, seed=2), 12)
    ranks = [first(build_batching(config, rows, batch_size=4, seed=2, rank=r, world_size=2), 12) for r in range(2)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == whole


@pytest.mark.parametrize("kind", ["random", "same_site", "site_stratified"])
def test_starting_at_a_batch_number_continues_the_sequence(rows, kind):
    composer = build_batching(BatchingConfig(kind=kind), rows, batch_size=8, seed=4)
    straight = first(composer, 25)
    assert first(composer, 14, start=11) == straight[11:]


def test_unknown_kind_and_bad_options_fail_at_config_time():
    with pytest.raises(KeyError, match="same_site"):
        BatchingConfig(kind="same_sites")
    with pytest.raises(ConfigError, match="small_sites"):
        BatchingConfig(small_sites="drop")
    with pytest.raises(ConfigError, match="at least two"):
        BatchingConfig(modalities=["ct"])
