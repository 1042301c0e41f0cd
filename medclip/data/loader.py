"""Batch loaders: torch's ``DataLoader`` (worker processes) or ``ThreadLoader`` (worker threads), behind one factory.

Why threads: a warm epoch over cached, memory-mapped volumes is mostly file reads and NumPy/torch array work, which
release the GIL. Worker *processes* must then copy every finished sample (16 MB for a 224x224x160 float16 CT) into
shared memory and hand it over, and that hand-over, not the loading, caps throughput (~100-130 volumes/s with two
processes on a 2-core machine, against ~800 for two threads doing the same reads). Threads share the memory, so a
sample is handed over by reference. Processes remain the right choice when loading is CPU-heavy *Python* (DICOM
parsing, tokenising, decoding in pure Python), which holds the GIL.

Randomness with threads. Worker processes each own a copy of torch's global RNG, seeded by the ``DataLoader``;
threads would share the main process's generator with the training step, in whatever order they run. So
``ThreadLoader`` gives every sample its own ``torch.Generator``, seeded from (the loader's base seed, batch number,
position in the batch), reachable through ``sample_generator()`` while that sample loads. Transforms that pass
``generator=sample_generator()`` to their random draws (the CT/volume augmentation does) are reproducible whatever
the thread timing, and leave the global RNG alone; transforms that draw from the global RNG still work, but their
draws (and the training step's dropout, which shares that RNG) are then not reproducible run to run.
"""

from __future__ import annotations

import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

_THREAD_STATE = threading.local()
SEED_MODULUS = 2**63 - 1


def sample_generator() -> torch.Generator | None:
    """The generator of the sample this thread is loading (under ``ThreadLoader``), else None (= torch's global RNG).

    Random transforms call ``torch.rand(..., generator=sample_generator())``: reproducible per sample with threads,
    and unchanged (global RNG, seeded per worker by ``DataLoader``) everywhere else.
    """
    return getattr(_THREAD_STATE, "generator", None)


@contextmanager
def seeded_sample(seed: int) -> Iterator[None]:
    """Give the sample loaded inside this block its own generator, seeded with ``seed`` (what ``sample_generator``
    returns there); the loader threads wrap each sample in it, and tests use it to replay one sample's draws."""
    previous = getattr(_THREAD_STATE, "generator", None)
    _THREAD_STATE.generator = torch.Generator().manual_seed(seed)
    try:
        yield
    finally:
        _THREAD_STATE.generator = previous


def _sample_seed(base_seed: int, batch_number: int, position: int) -> int:
    """A per-sample seed that differs for every (batch, position) and every base seed."""
    return (base_seed * 1_000_003 + batch_number * 65_537 + position) % SEED_MODULUS


def _pin(batch: Any) -> Any:
    """Page-lock every tensor of a (nested) batch, so the host-to-GPU copy can run asynchronously."""
    if torch.is_tensor(batch):
        return batch.pin_memory()
    if isinstance(batch, dict):
        return {key: _pin(value) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_pin(value) for value in batch)
    return batch


class ThreadLoader:
    """Batches of ``dataset`` in ``batch_sampler`` order, each loaded and collated by one of ``num_workers`` threads.

    The same contract as ``DataLoader(dataset, batch_sampler=..., collate_fn=...)``: batches arrive in sampler order
    (each thread builds whole batches, as a worker process does); an exception raised while loading or collating a
    batch is re-raised from ``next()`` (``ManifestDataset`` turns per-row failures into skip markers first, so a bad
    file skips its row rather than ending the epoch); the sampler is read lazily, so an endless resumable sampler
    works; at most ``prefetch_batches`` batches are loaded ahead, which bounds memory.

    Args:
        dataset: a map-style dataset.
        batch_sampler: an iterable of index lists (``BatchSampler``, the trainer's resumable sampler, ...).
        collate_fn: list of samples -> batch.
        num_workers: loading threads (>= 1).
        prefetch_batches: batches in flight; default ``2 * num_workers`` (``DataLoader``'s default prefetch).
        pin_memory: page-lock the batches' tensors (only where CUDA is available, as ``DataLoader`` does).
        generator: draws the base seed of the per-sample generators at each ``iter()``; None = the global RNG.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_sampler: Iterable[Sequence[int]],
        collate_fn: Callable[[list], Any],
        num_workers: int = 2,
        prefetch_batches: int | None = None,
        pin_memory: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"ThreadLoader needs num_workers >= 1, got {num_workers}")
        prefetch = 2 * num_workers if prefetch_batches is None else prefetch_batches
        if prefetch < 1:
            raise ValueError(f"ThreadLoader needs prefetch_batches >= 1, got {prefetch_batches}")
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.collate_fn = collate_fn
        self.num_workers = num_workers
        self.prefetch_batches = prefetch
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.generator = generator

    def __len__(self) -> int:
        """Batches per pass: the sampler's length (a ``TypeError`` for an endless sampler, as with ``DataLoader``)."""
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def __iter__(self) -> _ThreadBatches:
        base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        return _ThreadBatches(self, base_seed)


def _load_batch(loader: ThreadLoader, indices: list[int], seeds: list[int], stopped: threading.Event) -> Any:
    """Load and collate one batch (runs in a pool thread; holds no reference to the iterator, so dropping the
    iterator frees it at once)."""
    samples = []
    for index, seed in zip(indices, seeds, strict=True):
        if stopped.is_set():  # closed mid-batch: drop the rest instead of loading it for nobody
            return None
        with seeded_sample(seed):
            samples.append(loader.dataset[index])
    batch = loader.collate_fn(samples)
    return _pin(batch) if loader.pin_memory else batch


class _ThreadBatches(Iterator):
    """One pass of a ``ThreadLoader``: a thread pool, the batches in flight (in order), and a clean shutdown."""

    def __init__(self, loader: ThreadLoader, base_seed: int) -> None:
        self.loader = loader
        self.base_seed = base_seed
        self.stopped = threading.Event()
        self.pending: deque[Future] = deque()
        self.batch_number = 0
        self.indices = iter(loader.batch_sampler)
        self.pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=loader.num_workers, thread_name_prefix="medclip-loader"
        )
        try:
            for _ in range(loader.prefetch_batches):
                if not self._submit_next():
                    break
        except BaseException:
            self.close()
            raise

    def _submit_next(self) -> bool:
        """Queue the next batch of the sampler; False when the sampler is exhausted."""
        try:
            indices = list(next(self.indices))
        except StopIteration:
            return False
        assert self.pool is not None
        seeds = [_sample_seed(self.base_seed, self.batch_number, position) for position in range(len(indices))]
        self.pending.append(self.pool.submit(_load_batch, self.loader, indices, seeds, self.stopped))
        self.batch_number += 1
        return True

    def __next__(self) -> Any:
        if not self.pending:
            self.close()
            raise StopIteration
        future = self.pending.popleft()
        try:
            batch = future.result()
            self._submit_next()
        except BaseException:
            self.close()  # as DataLoader does: an error from a worker ends this pass
            raise
        return batch

    def close(self) -> None:
        """Stop loading: queued batches are cancelled, running ones stop at their next sample; threads are joined."""
        stopped = getattr(self, "stopped", None)  # (absent when __init__ failed early)
        if stopped is not None:
            stopped.set()
        pool, self.pool = getattr(self, "pool", None), None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if hasattr(self, "pending"):
            self.pending.clear()

    def __del__(self) -> None:
        self.close()


WorkerFactory = Callable[..., Iterable[Any]]


def leave_termination_to_the_main_process(worker_id: int) -> None:
    """Loader worker processes ignore SIGTERM.

    SLURM and ``kill -TERM -PGID`` signal the whole process group: a worker that died of it would take the run down
    with an error before the main process could checkpoint. The main process handles SIGTERM (checkpoint, exit 0) and
    shuts its workers down itself; they also exit when the main process is gone.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _process_loader(
    dataset, batch_sampler, collate_fn, num_workers, pin_memory, generator, persistent_workers, prefetch_batches
):
    options = {}
    if num_workers > 0 and prefetch_batches is not None:
        options["prefetch_factor"] = max(1, -(-prefetch_batches // num_workers))  # DataLoader counts per worker
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        generator=generator,
        worker_init_fn=leave_termination_to_the_main_process if num_workers > 0 else None,
        **options,
    )


def _thread_loader(
    dataset, batch_sampler, collate_fn, num_workers, pin_memory, generator, persistent_workers, prefetch_batches
):
    # persistent_workers has no meaning here: a pass starts its threads in microseconds, with nothing to import.
    if num_workers == 0:  # no workers: load in the calling process, exactly as DataLoader(num_workers=0) does
        return _process_loader(dataset, batch_sampler, collate_fn, 0, pin_memory, generator, False, None)
    return ThreadLoader(dataset, batch_sampler, collate_fn, num_workers, prefetch_batches, pin_memory, generator)


WORKER_KINDS: dict[str, WorkerFactory] = {"process": _process_loader, "thread": _thread_loader}


def check_worker_kind(kind: str) -> str:
    """``kind`` if it names a loader in ``WORKER_KINDS``; else a ``ValueError`` listing the valid ones."""
    if kind not in WORKER_KINDS:
        raise ValueError(f"unknown worker kind {kind!r}; choose one of {', '.join(WORKER_KINDS)}")
    return kind


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int | None = None,
    batch_sampler: Iterable[Sequence[int]] | None = None,
    collate_fn: Callable[[list], Any],
    num_workers: int = 0,
    worker_kind: str = "process",
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
    persistent_workers: bool = False,
    prefetch_batches: int | None = None,
) -> Iterable[Any]:
    """A batch loader of the given worker kind: ``DataLoader`` for "process", ``ThreadLoader`` for "thread".

    Give either ``batch_size`` (sequential order, last batch kept, as ``DataLoader(batch_size=...)``) or a
    ``batch_sampler``. With ``num_workers=0`` both kinds load in the calling thread (a plain ``DataLoader``).

    Raises:
        ValueError: an unknown ``worker_kind``, or neither/both of ``batch_size`` and ``batch_sampler``.
    """
    factory = WORKER_KINDS[check_worker_kind(worker_kind)]
    if (batch_size is None) == (batch_sampler is None):
        raise ValueError("make_loader needs exactly one of batch_size and batch_sampler")
    if batch_sampler is None:
        batch_sampler = torch.utils.data.BatchSampler(
            torch.utils.data.SequentialSampler(dataset), batch_size=batch_size, drop_last=False
        )
    return factory(
        dataset, batch_sampler, collate_fn, num_workers, pin_memory, generator, persistent_workers, prefetch_batches
    )
