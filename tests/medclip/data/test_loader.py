"""Batch loaders (medclip/data/loader.py): ThreadLoader matches DataLoader batch for batch on a real cached CT
manifest, propagates errors, shuts down cleanly, resumes mid-epoch, keeps augmentation reproducible per sample, and
trains through the trainer with ``data.worker_kind=thread``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import medclip
from medclip import config
from medclip.config import ConfigError
from medclip.data import ManifestDataset, assign_splits, read_manifest
from medclip.data.loader import ThreadLoader, make_loader, sample_generator
from medclip.train.sampler import ResumableBatchSampler
from medclip.train.trainer import _BatchesFrom
from modalities.ct.phantom import write_phantom_dataset
from recipes.pretrain import Config as PretrainConfig

CT_OPTIONS = {"size": [16, 16, 16], "spacing": [24.0, 24.0, 21.0], "patch_size": [8, 8, 8]}


@pytest.fixture(scope="module")
def ct_manifest(tmp_path_factory) -> Path:
    """Eight phantom CT studies (NIfTI + report); row 2's volume is a truncated file, which fails when loaded."""
    folder = tmp_path_factory.mktemp("ct-loader")
    manifest = write_phantom_dataset(folder / "ph", n=8, shape=(24, 24, 16), spacing=(16, 16, 21))
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    volume = manifest.parent / table.loc[2, "ct"]
    volume.write_bytes(volume.read_bytes()[:200])
    return manifest


def _dataset(manifest: Path, cache: Path, train: bool = False, with_report: bool = True) -> ManifestDataset:
    names = ["ct", "report"] if with_report else ["ct"]
    rows = read_manifest(manifest, names)
    splits = assign_splits(rows, 0.0, 0.0, 0)
    modalities = {"ct": medclip.get_modality("ct", {**CT_OPTIONS, "cache_dir": str(cache)})}
    if with_report:
        modalities["report"] = medclip.get_modality("report", {"max_tokens": 32, "vocab_size": 200})
    dataset = ManifestDataset(rows, modalities, split="train", train=train, splits=splits)
    if with_report:
        modalities["report"].fit(dataset.load_raw("report"))
    return dataset


def _assert_equal(want, have, where: str = "batch") -> None:
    """Recursive equality of batches: tensors exactly, skip markers field by field, everything else with ==."""
    assert type(want) is type(have), where
    if torch.is_tensor(want):
        assert want.dtype == have.dtype and torch.equal(want, have), where
    elif isinstance(want, dict):
        assert want.keys() == have.keys(), where
        for key in want:
            _assert_equal(want[key], have[key], f"{where}.{key}")
    elif isinstance(want, list | tuple):
        assert len(want) == len(have), where
        for index, (a, b) in enumerate(zip(want, have, strict=True)):
            _assert_equal(a, b, f"{where}[{index}]")
    elif hasattr(want, "__dataclass_fields__"):
        assert vars(want) == vars(have), where
    else:
        assert want == have, where


def _assert_same_batches(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        _assert_equal(want, have)


def _loader_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("medclip-loader")]


def _wait_for_no_loader_threads(deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while _loader_threads() and time.monotonic() < end:
        time.sleep(0.01)
    assert not _loader_threads()


def test_thread_batches_equal_dataloader_batches_in_order(ct_manifest, tmp_path):
    dataset = _dataset(ct_manifest, tmp_path / "cache")
    batches = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(dataset), 3, drop_last=False)
    expected = list(DataLoader(dataset, batch_sampler=batches, collate_fn=dataset.collate_fn))  # also fills the cache
    loader = ThreadLoader(dataset, batches, dataset.collate_fn, num_workers=2, prefetch_batches=2)
    assert len(loader) == len(expected) == 3
    got = list(loader)
    _assert_same_batches(expected, got)
    assert [marker.column for batch in got for marker in batch["skipped"]] == ["ct"]  # the truncated volume
    assert sum(batch["batch_size"] for batch in got) == len(dataset) - 1
    _wait_for_no_loader_threads()
    # make_loader gives the same batches for either worker kind, from batch_size alone.
    for kind in ("thread", "process"):
        made = make_loader(dataset, batch_size=3, collate_fn=dataset.collate_fn, num_workers=1, worker_kind=kind)
        _assert_same_batches(expected, list(made))


class _NpyFiles(Dataset):
    """Arrays read from .npy files: a missing file raises, as a dataset without skip markers would."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.load(self.paths[index], allow_pickle=False))


def test_an_error_in_a_worker_thread_reaches_the_caller_and_ends_the_pass(tmp_path):
    paths = []
    for index in range(6):
        paths.append(tmp_path / f"array_{index}.npy")
        np.save(paths[-1], np.full((4,), index, dtype=np.float32))
    paths[3].unlink()
    loader = make_loader(_NpyFiles(paths), batch_size=2, collate_fn=torch.stack, num_workers=2, worker_kind="thread")
    iterator = iter(loader)
    assert torch.equal(next(iterator), torch.tensor([[0.0] * 4, [1.0] * 4]))
    with pytest.raises(FileNotFoundError):
        next(iterator)
    with pytest.raises(StopIteration):  # the pass is over, as with DataLoader after a worker error
        next(iterator)
    _wait_for_no_loader_threads()


def test_early_close_and_dropping_an_endless_pass_do_not_hang(ct_manifest, tmp_path):
    dataset = _dataset(ct_manifest, tmp_path / "cache")
    sampler = ResumableBatchSampler(len(dataset), 2, seed=1)  # endless
    loader = ThreadLoader(dataset, _BatchesFrom(sampler, 0), dataset.collate_fn, num_workers=2)
    with pytest.raises(TypeError):
        len(loader)  # an endless sampler has no length, as with DataLoader
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    iterator.close()
    assert time.perf_counter() - start < 5.0
    assert not _loader_threads()
    iterator = iter(loader)
    next(iterator)
    del iterator  # dropped without close(): the threads still end
    _wait_for_no_loader_threads()


def test_resume_with_batches_from_continues_the_straight_order(ct_manifest, tmp_path):
    dataset = _dataset(ct_manifest, tmp_path / "cache")

    def rows(consumed: int, count: int) -> list[list[int]]:
        sampler = ResumableBatchSampler(len(dataset), 2, seed=3)
        iterator = iter(
            make_loader(
                dataset,
                batch_sampler=_BatchesFrom(sampler, consumed),
                collate_fn=dataset.collate_fn,
                num_workers=2,
                worker_kind="thread",
            )
        )
        taken = [next(iterator) for _ in range(count)]
        iterator.close()
        return [[*batch["row"], *(marker.row_number for marker in batch["skipped"])] for batch in taken]

    straight = rows(0, 7)  # crosses into the third epoch (3 batches of 2 per epoch)
    assert rows(4, 3) == straight[4:]


def test_ct_augmentation_is_reproducible_per_sample_and_leaves_the_global_rng_alone(ct_manifest, tmp_path):
    dataset = _dataset(ct_manifest, tmp_path / "cache", train=True, with_report=False)

    def one_pass(seed: int) -> list[torch.Tensor]:
        loader = make_loader(
            dataset,
            batch_size=2,
            collate_fn=dataset.collate_fn,
            num_workers=2,
            worker_kind="thread",
            generator=torch.Generator().manual_seed(seed),
        )
        return [batch["ct"] for batch in loader]

    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = one_pass(5)
    again = one_pass(5)
    other = one_pass(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(first, other, strict=True))
    # The augmentation drew from the per-sample generators, the base seeds from the given generators: the global
    # RNG (which the training step's dropout uses) was not touched.
    assert torch.equal(torch.get_rng_state(), state)
    plain = _dataset(ct_manifest, tmp_path / "cache", with_report=False)
    eval_pass = [batch["ct"] for batch in make_loader(plain, batch_size=2, collate_fn=plain.collate_fn)]
    assert any(not torch.equal(a, b) for a, b in zip(first, eval_pass, strict=True))  # it did augment
    assert sample_generator() is None  # only set inside a loader thread, while a sample loads


def test_pretrain_runs_with_thread_workers(small_experiment):
    from recipes.pretrain import pretrain

    result = pretrain(small_experiment("train.steps=2", "data.worker_kind=thread", "data.num_workers=2"))
    assert (result.checkpoint / "model.safetensors").is_file()
    assert np.isfinite(result.metrics["loss"])
    _wait_for_no_loader_threads()


def test_worker_kind_is_validated():
    built = config.build(PretrainConfig, {"data": {"worker_kind": "thread", "num_workers": 2}})
    assert built.data.worker_kind == "thread"
    with pytest.raises(ConfigError, match=r"data\.worker_kind must be one of process, thread, got 'fork'"):
        config.build(PretrainConfig, {"data": {"worker_kind": "fork"}})
    with pytest.raises(ConfigError, match=r"data\.num_workers must be >= 0"):
        config.build(PretrainConfig, {"data": {"num_workers": -1}})
    with pytest.raises(ValueError, match="unknown worker kind 'fork'"):
        make_loader([], batch_size=1, collate_fn=list, worker_kind="fork")
    with pytest.raises(ValueError, match="exactly one of batch_size and batch_sampler"):
        make_loader([], collate_fn=list)
    with pytest.raises(ValueError, match="num_workers >= 1"):
        ThreadLoader([], [], list, num_workers=0)
