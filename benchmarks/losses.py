"""Loss benchmarks: medclip vs peers side by side in one run, correctness checked first.

    .venv/bin/python benchmarks/losses.py --quick         # small batches, a few minutes on a 2-core CPU
    .venv/bin/python benchmarks/losses.py                 # the issue's sizes (B = 4k..32k; needs a big machine)
    .venv/bin/python benchmarks/losses.py --device cuda   # on a GPU: memory = torch.cuda.max_memory_allocated

What is compared (forward + backward of the loss on fixed unit-norm features, fp32):
  1. symmetric InfoNCE: open_clip ``ClipLoss`` vs medclip ``tiled_clip_loss`` (D = 512);
  2. soft-label loss (medclip, tiled) vs plain InfoNCE (medclip, tiled), and vs the MedCLIP formulation as written
     in its paper (materialised label-similarity matrix, softmax targets, soft cross-entropy);
  3. token-level: the naive FILIP einsum (B x B x T x T similarity tensor) vs medclip ``filip_loss``.

Memory on CPU is the peak resident set size (VmHWM) of a spawned child process that runs one measurement, minus its
resident size after building the inputs: the bytes the loss itself needed. On CUDA it is the peak allocated memory
above the inputs, in the first run. Every measurement runs in its own fresh process, so peaks never leak between rows.
Time is the best of up to three runs (fewer when they take over 20 s together), each starting without gradients.
Measurements under 10 s run in three processes: median memory, best time.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from medclip.losses import filip_loss, soft_label_loss, tiled_clip_loss
from medclip.losses.tiled import DEFAULT_TILE_SIZE

MIB = 1 << 20


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _limit_address_space() -> None:
    """Cap the child at 80% of the machine's memory: a peer that cannot fit fails with an error, not the OOM killer."""
    import resource

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    resource.setrlimit(resource.RLIMIT_AS, (int(total * 0.8), resource.RLIM_INFINITY))


def _child(kind: str, args: tuple, device: str, queue) -> None:
    try:
        if device == "cpu":
            _limit_address_space()
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        torch.manual_seed(0)
        step = CONTENDERS[kind](*args, device)()  # builds the inputs; returns the forward+backward closure
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # reset VmHWM to the current resident size
            base = _rss_kib("VmRSS:") * 1024
        # Memory: the peak of the first run. Time: the best of up to three runs (fewer when one takes long), since a
        # single run on a shared 2-core box is noisy.
        seconds, spent, peak = math.inf, 0.0, None
        for _ in range(3):
            start = time.perf_counter()
            value = step()
            if device == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            if peak is None:
                peak = torch.cuda.max_memory_allocated() if device == "cuda" else _rss_kib("VmHWM:") * 1024
            seconds, spent = min(seconds, elapsed), spent + elapsed
            if spent > 20.0:
                break
        queue.put((seconds, max(peak - base, 0), float(value)))
    except Exception as error:  # report and go on with the other rows
        queue.put(("error", f"{type(error).__name__}: {error}"[:200], None))


def _measure_once(kind: str, args: tuple, device: str) -> tuple[float, int, float] | str:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(kind, args, device, queue))
    process.start()
    process.join()
    if process.exitcode != 0 or queue.empty():
        return f"process died (exit code {process.exitcode}; out of memory?)"
    result = queue.get()
    return result[1] if result[0] == "error" else result


def measure(kind: str, args: tuple, device: str) -> tuple[float, int, float] | str:
    """Run one contender in fresh (spawned) processes; (seconds, peak bytes above the inputs, value) or an error.

    Spawned, not forked: a fork of a process whose OpenMP threads have run can deadlock. A measurement that takes
    under 10 s is repeated in three processes: the peak resident size of identical runs varies by a few MiB with
    the allocator's state, so the median is reported (and the best time).
    """
    first = _measure_once(kind, args, device)
    if isinstance(first, str) or first[0] >= 10.0:
        return first
    runs = [first, *(_measure_once(kind, args, device) for _ in range(2))]
    if any(isinstance(run, str) for run in runs):
        return next(run for run in runs if isinstance(run, str))
    return min(run[0] for run in runs), sorted(run[1] for run in runs)[1], first[2]


def unit(rows: int, dim: int, device: str, seed: int, requires_grad: bool = True) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(rows, dim, generator=generator), dim=-1).to(device)
    return features.requires_grad_(requires_grad)


def random_labels(rows: int, classes: int, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    labels = (torch.rand(rows, classes, generator=generator) < 0.3).float()
    labels[torch.rand(rows, classes, generator=generator) < 0.2] = float("nan")
    return labels.to(device)


# --- the contenders ---------------------------------------------------------------------------------------------


def _backward_step(a: torch.Tensor, b: torch.Tensor, compute: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """The timed closure: forward + backward of ``compute()`` on the leaves ``a`` and ``b``."""

    def step():
        a.grad = b.grad = None  # each run starts without gradients, as a training step does
        value = compute()
        value.backward()
        return value.detach()

    return step


def _pair_features(batch: int, dim: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, D) unit features of two modalities and a logit scale, the same for every contender."""
    return unit(batch, dim, device, 1), unit(batch, dim, device, 2), torch.tensor(14.3, device=device)


def _token_features(batch: int, tokens: int, dim: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, T, D) unit token embeddings of two modalities and a logit scale."""
    a = F.normalize(torch.randn(batch, tokens, dim), dim=-1).to(device).requires_grad_()
    b = F.normalize(torch.randn(batch, tokens, dim), dim=-1).to(device).requires_grad_()
    return a, b, torch.tensor(14.3, device=device)


def open_clip_step(batch: int, dim: int, device: str) -> Callable[[], Callable[[], torch.Tensor]]:
    def make():
        from open_clip.loss import ClipLoss

        a, b, scale = _pair_features(batch, dim, device)
        loss = ClipLoss()
        return _backward_step(a, b, lambda: loss(a, b, scale))

    return make


def medclip_clip_step(batch: int, dim: int, tile: int, device: str) -> Callable[[], Callable[[], torch.Tensor]]:
    def make():
        a, b, scale = _pair_features(batch, dim, device)
        return _backward_step(a, b, lambda: tiled_clip_loss(a, b, scale, tile_size=tile))

    return make


def medclip_soft_label_step(
    batch: int, dim: int, tile: int, device: str, unknown: bool = True
) -> Callable[[], Callable[[], torch.Tensor]]:
    def make():
        a, b, scale = _pair_features(batch, dim, device)
        labels = random_labels(batch, 14, device)
        if not unknown:  # every label known, as MedCLIP and Cardiac-CLIP use them
            labels = labels.nan_to_num(0.0)
        return _backward_step(a, b, lambda: soft_label_loss(a, b, scale, labels, tile_size=tile, tiled_above=0))

    return make


def medclip_paper_soft_label_step(batch: int, dim: int, device: str) -> Callable[[], Callable[[], torch.Tensor]]:
    """MedCLIP's semantic matching loss as written in the paper: every matrix materialised."""

    def make():
        a, b, scale = _pair_features(batch, dim, device)
        labels = random_labels(batch, 14, device).nan_to_num(0.0)  # the paper has no unknown labels

        def compute():
            normed = F.normalize(labels, dim=-1)
            similarity = normed @ normed.T  # (B, B) label cosine
            logits = scale * a @ b.T  # (B, B)
            image_loss = -(similarity.softmax(1) * logits.log_softmax(1)).sum(1).mean()
            text_loss = -(similarity.T.softmax(1) * logits.T.log_softmax(1)).sum(1).mean()
            return (image_loss + text_loss) / 2

        return _backward_step(a, b, compute)

    return make


def filip_naive_step(batch: int, tokens: int, dim: int, device: str) -> Callable[[], Callable[[], torch.Tensor]]:
    def make():
        a, b, scale = _token_features(batch, tokens, dim, device)

        def compute():
            similarity = torch.einsum("ikd,jrd->ijkr", a, b)  # (B, B, T, T)
            a_to_b = similarity.max(-1).values.mean(-1)
            b_to_a = similarity.max(2).values.mean(-1)
            targets = torch.arange(batch, device=device)
            return (F.cross_entropy(scale * a_to_b, targets) + F.cross_entropy(scale * b_to_a.T, targets)) / 2

        return _backward_step(a, b, compute)

    return make


def filip_medclip_step(batch: int, tokens: int, dim: int, device: str) -> Callable[[], Callable[[], torch.Tensor]]:
    def make():
        a, b, scale = _token_features(batch, tokens, dim, device)
        return _backward_step(a, b, lambda: filip_loss(a, b, scale, block_elements=1 << 22))

    return make


CONTENDERS: dict[str, Callable[..., Callable[[], Callable[[], torch.Tensor]]]] = {
    "open_clip": open_clip_step,
    "medclip_clip": medclip_clip_step,
    "medclip_soft_label": medclip_soft_label_step,
    "medclip_soft_label_known": lambda batch, dim, tile, device: medclip_soft_label_step(
        batch, dim, tile, device, False
    ),
    "medclip_paper_soft_label": medclip_paper_soft_label_step,
    "filip_naive": filip_naive_step,
    "filip_medclip": filip_medclip_step,
}


# --- correctness first ------------------------------------------------------------------------------------------


def check_correctness(device: str) -> None:
    from open_clip.loss import ClipLoss

    from medclip.losses import clip_loss
    from medclip.losses.token import token_max_similarity

    a, b = unit(1000, 64, device, 3), unit(1000, 64, device, 4)
    scale = torch.tensor(20.0, device=device, requires_grad=True)
    reference = ClipLoss()(a, b, scale)
    grads_reference = torch.autograd.grad(reference, (a, b, scale))
    ours = tiled_clip_loss(a, b, scale, tile_size=128)
    grads_ours = torch.autograd.grad(ours, (a, b, scale))
    worst = max(float((x - y).abs().max()) for x, y in zip(grads_ours, grads_reference, strict=True))
    ours, reference = ours.detach(), reference.detach()
    assert abs(float(ours) - float(reference)) < 1e-5 and worst < 1e-5, (float(ours), float(reference), worst)
    labels = random_labels(1000, 14, device)
    tiled = soft_label_loss(a, b, scale, labels, tile_size=128, tiled_above=0)
    plain = soft_label_loss(a, b, scale, labels, tiled_above=10**9)
    assert abs(float(tiled.detach()) - float(plain.detach())) < 1e-5
    tokens_a = F.normalize(torch.randn(12, 9, 32), dim=-1).to(device)
    tokens_b = F.normalize(torch.randn(12, 7, 32), dim=-1).to(device)
    naive = torch.einsum("ikd,jrd->ijkr", tokens_a, tokens_b).max(-1).values.mean(-1)
    assert torch.allclose(token_max_similarity(tokens_a, tokens_b, block_elements=500)[0], naive, atol=1e-6)
    assert abs(float(clip_loss(a, b, scale).detach()) - float(reference)) < 1e-5
    print(
        f"correctness: tiled InfoNCE == open_clip ClipLoss (|value diff| {abs(float(ours) - float(reference)):.1e}, "
        f"max |grad diff| {worst:.1e}); tiled soft-label == plain; blockwise FILIP == naive einsum"
    )


# --- tables -----------------------------------------------------------------------------------------------------


def cell(result: tuple[float, int, float] | str) -> str:
    if isinstance(result, str):
        return f"{'n/a':>10} {'n/a':>10}  ({result})"
    seconds, peak, _ = result
    return f"{seconds:9.2f}s {peak / MIB:9.1f}M"


def ratio(ours: tuple | str, peer: tuple | str) -> str:
    if isinstance(ours, str) or isinstance(peer, str):
        return "n/a"
    memory = ours[1] / peer[1] if peer[1] > 0 else math.nan
    return f"time x{ours[0] / peer[0]:.2f}, memory x{memory:.3f} (1/{1 / memory:.0f})" if memory > 0 else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller batches (minutes on a laptop CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE_SIZE)
    parser.add_argument("--sections", default="123", help="which tables to run, e.g. 12")
    parser.add_argument("--skip-peer-above", type=int, default=16384, help="do not run open_clip above this batch")
    args = parser.parse_args()
    device = args.device
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    check_correctness(device)
    dim = 512
    memory_kind = "peak RSS above inputs" if device == "cpu" else "peak CUDA allocated above inputs"
    print(f"device {device}, {torch.get_num_threads()} threads, fp32, D = {dim}; memory = {memory_kind}\n")

    if "1" in args.sections:
        infonce_table(args, device, dim)
    if "2" in args.sections:
        soft_label_table(args, device, dim)
    if "3" in args.sections:
        token_table(args, device)


def infonce_table(args: argparse.Namespace, device: str, dim: int) -> None:
    batches = [1024, 2048, 4096] if args.quick else [4096, 8192, 16384, 32768]
    print("1. symmetric InfoNCE, forward + backward: open_clip ClipLoss | medclip tiled_clip_loss | ratio")
    for batch in batches:
        peer = measure("open_clip", (batch, dim), device) if batch <= args.skip_peer_above else "skipped"
        ours = measure("medclip_clip", (batch, dim, args.tile), device)
        print(f"  B={batch:6d}  open_clip {cell(peer)} | medclip {cell(ours)} | {ratio(ours, peer)}", flush=True)


def soft_label_table(args: argparse.Namespace, device: str, dim: int) -> None:
    soft_batches = [1024, 2048] if args.quick else [4096, 8192]
    print("\n2. soft-label (14 labels): medclip soft_label (tiled) | medclip InfoNCE (tiled) | MedCLIP paper")
    for batch in soft_batches:
        plain = measure("medclip_clip", (batch, dim, args.tile), device)
        paper = measure("medclip_paper_soft_label", (batch, dim), device)
        for kind, label in (("medclip_soft_label_known", "all known"), ("medclip_soft_label", "20% unknown")):
            soft = measure(kind, (batch, dim, args.tile), device)
            print(f"  B={batch:6d} labels {label:11s} soft {cell(soft)} | InfoNCE {cell(plain)} | paper {cell(paper)}")
            print(f"           soft vs InfoNCE: {ratio(soft, plain)}; soft vs paper: {ratio(soft, paper)}", flush=True)


def token_table(args: argparse.Namespace, device: str) -> None:
    token_shapes = [(32, 98), (8, 490)] if args.quick else [(128, 196), (32, 1960)]
    token_dim = 256  # FILIP's token embedding size (it reduces 512/768 to 256 for the token-wise similarity)
    print(f"\n3. token level (D = {token_dim}): naive FILIP einsum | medclip filip_loss")
    for batch, tokens in token_shapes:
        naive = measure("filip_naive", (batch, tokens, token_dim), device)
        if isinstance(naive, str):
            need = 2 * batch * batch * tokens * tokens * 4 / (1 << 30)  # similarity + its gradient, fp32
            naive = f"{naive}; the naive einsum needs >= {need:.1f} GiB for its similarity tensor and gradient"
        ours = measure("filip_medclip", (batch, tokens, token_dim), device)
        print(
            f"  B={batch:4d} T={tokens:5d}  naive {cell(naive)} | medclip {cell(ours)} | {ratio(ours, naive)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
