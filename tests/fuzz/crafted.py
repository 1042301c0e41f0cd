"""Crafted adversarial inputs (issue 14): each is run through its modality plugin in a separate process with a memory
limit and a time budget, and its outcome is classified.

A crafted case is one input built in-process with the real writer of its format (pydicom, nibabel, wfdb, tifffile,
anndata, plain bytes), plus what must happen to it: refused with one of the ``expect`` reason codes, or loaded
(``LOADS``). A module ``tests/fuzz/crafted_<area>.py`` defines ``cases(root: Path) -> list[Crafted]``, which writes its
files under ``root``; ``run_crafted(module, root)`` builds them in a child process and runs every case there exactly as
the data pipeline does (``resolve`` -> ``load`` -> evaluation ``transforms``), recording:

- ``hang``: the case did not finish within ``seconds`` (the child is killed and the run continues with the next case);
- ``memory``: the child's address space hit ``MEMORY_LIMIT`` (a ``MemoryError``, or the child died), or the case's
  traced peak (NumPy allocations) exceeded ``peak_mb``;
- ``garbage``: it loaded although it should have been refused (silent garbage);
- ``crash``: it raised something other than ``ModalityError`` (an escaped library error without a reason code);
- ``wrong_reason``: refused, but with a reason the case does not expect;
- ``ok``: the expected outcome.

Nothing runs in the test process itself, so a reader that still allocates gigabytes cannot take the machine down.
``python -m tests.fuzz.report`` prints the figures SECURITY.md reports.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOADS = "loads"  # the expected outcome of an input that must be read
MEMORY_LIMIT = 3 * 1024**3  # address space the child may add to what torch and the libraries have mapped at start
OUTCOMES = ("ok", "hang", "memory", "garbage", "crash", "wrong_reason")
REPOSITORY = Path(__file__).resolve().parents[2]  # the child imports tests.fuzz.* from here


@dataclass
class Crafted:
    """One crafted input.

    Attributes:
        name: a short unique name (what the input is: "nifti_huge_header_dims").
        modality: the plugin that reads it ("ct", "ecg", ...).
        cell: the manifest cell (a path relative to the cases' root, or inline text for reports).
        expect: the reason codes it may be refused with, or ``(LOADS,)`` when it must load.
        options: the modality's config options for this case (e.g. a small ``max_decoded_mb``).
        seconds: time budget for resolve + load + transforms.
        peak_mb: budget for the traced peak allocation while reading it.
    """

    name: str
    modality: str
    cell: str
    expect: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 60.0  # a hang never ends: the budget only has to outlast a loaded machine
    peak_mb: float = 512.0


@dataclass
class CaseResult:
    name: str
    modality: str
    outcome: str  # one of OUTCOMES
    detail: str  # the reason code it was refused with, "loaded", or what went wrong
    seconds: float
    peak_mb: float


def _run_one(case: Crafted, root: Path) -> tuple[str, float]:
    """resolve -> load -> evaluation transforms, as ``ManifestDataset`` does; returns ("loaded" | reason, peak MB)."""
    from medclip import get_modality
    from medclip.types import ModalityError

    plugin = get_modality(case.modality, dict(case.options))
    if plugin.fits_on_data:  # a tokenizer / gene vocabulary, fitted as pretraining would, on synthetic samples
        plugin.fit(plugin.synthetic(16))
    tracemalloc.reset_peak()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sample = plugin.load(plugin.resolve(case.cell, root))
            plugin.transforms(train=False)(sample)
        detail = "loaded"
    except ModalityError as error:
        detail = error.reason
    except MemoryError:
        detail = "MemoryError"
    except Exception as error:  # classified as a crash by the parent
        detail = f"crash:{type(error).__name__}"
    _, peak = tracemalloc.get_traced_memory()
    return detail, peak / 1024**2


def _child(module: str, root: str, start: int) -> None:
    """Child process: build the cases and run those from ``start`` on, one JSON line before and after each."""
    from medclip import get_modality

    cases = importlib.import_module(module).cases(Path(root))
    for name in sorted({case.modality for case in cases}):  # import each plugin's libraries before the limit
        get_modality(name)
    # torch's CUDA build reserves gigabytes of address space at import: limit what is added after it
    mapped = _mapped_bytes()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + MEMORY_LIMIT, mapped + MEMORY_LIMIT))
    tracemalloc.start()
    for index, case in enumerate(cases[start:], start=start):
        print(json.dumps({"start": index}), flush=True)
        began = time.perf_counter()
        detail, peak = _run_one(case, Path(root))
        event = {"done": index, "detail": detail, "peak_mb": peak, "s": time.perf_counter() - began}
        print(json.dumps(event), flush=True)


def _mapped_bytes() -> int:
    """The process's current virtual size (VmSize), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _classify(case: Crafted, detail: str, peak_mb: float) -> str:
    if detail == "MemoryError" or peak_mb > case.peak_mb:
        return "memory"
    if detail.startswith("crash:"):
        return "crash"
    if detail == "loaded":
        return "ok" if LOADS in case.expect else "garbage"
    return "ok" if detail in case.expect else "wrong_reason"


def run_crafted(module: str, root: Path, build: Callable[[Path], list[Crafted]]) -> list[CaseResult]:
    """Run every case of ``module`` (a module name such as "tests.fuzz.crafted_volume") in child processes.

    ``build`` is the module's own ``cases`` function, called here too (files are rewritten identically) so the parent
    knows each case's expectations and budgets. A child that hangs or dies is replaced by a new one that continues
    with the next case.
    """
    cases = build(root)
    results: list[CaseResult] = []
    code = "import sys; from tests.fuzz.crafted import _child; _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
    threads = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **threads, "PYTHONPATH": path}
    while len(results) < len(cases):
        process = subprocess.Popen(
            [sys.executable, "-c", code, module, str(root), str(len(results))],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        current: int | None = None
        began = time.perf_counter()
        deadline: list[float | None] = [None]  # read by _events while the loop below updates it
        for event in _events(process, deadline):
            if "start" in event:
                current, began = event["start"], time.perf_counter()
                deadline[0] = began + cases[current].seconds
                continue
            case = cases[event["done"]]
            outcome = _classify(case, event["detail"], event["peak_mb"])
            results.append(CaseResult(case.name, case.modality, outcome, event["detail"], event["s"], event["peak_mb"]))
            current, deadline[0] = None, None
        process.kill()
        returncode = process.wait()
        if current is None:
            if len(results) < len(cases):  # the child died outside any case (imports, building the cases)
                raise RuntimeError(f"the crafted-input runner for {module} exited with {returncode} between cases")
            break
        case, elapsed = cases[current], time.perf_counter() - began
        if elapsed >= case.seconds:
            outcome, detail = "hang", "killed after the time budget"
        elif returncode in (-9, -6):  # killed, or aborted by a C++ allocation failure under the memory limit
            outcome, detail = "memory", f"died with signal {-returncode}"
        else:
            outcome, detail = "crash", f"died with exit code {returncode}"
        results.append(CaseResult(case.name, case.modality, outcome, detail, elapsed, float("nan")))
    return results


def _events(process: subprocess.Popen, deadline: list[float | None]):
    """The child's JSON events; stops when the running case passes its deadline or the child exits.

    Reads the pipe's file descriptor directly: a buffered reader could hold complete lines that ``select`` no longer
    sees as readable.
    """
    import selectors

    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(descriptor, selectors.EVENT_READ)
    pending = b""
    while True:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield json.loads(line)
        limit = deadline[0]
        timeout = 600.0 if limit is None else max(0.0, limit - time.perf_counter())
        if not selector.select(timeout=timeout):
            if limit is not None and time.perf_counter() >= limit:
                return
            continue
        chunk = os.read(descriptor, 65536)
        if not chunk:
            return
        pending += chunk


def assert_all_ok(results: list[CaseResult]) -> None:
    """Every case had its expected outcome; the message lists the others (names and outcomes, no data)."""
    bad = [f"{r.name}: {r.outcome} ({r.detail}, {r.seconds:.1f} s, {r.peak_mb:.0f} MB)" for r in results]
    bad = [line for line, r in zip(bad, results, strict=True) if r.outcome != "ok"]
    assert not bad, "crafted inputs not handled:\n  " + "\n  ".join(bad)
