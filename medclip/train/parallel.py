"""How the model is spread over the data-parallel processes: DDP (default) or FSDP2, and how its full state is saved.

``train.parallel`` picks a strategy from ``PARALLEL_STRATEGIES``:

- "ddp": every process holds the whole model; ``DistributedDataParallel`` averages gradients. Best while the model,
  its gradients and AdamW's two moments fit on one device (CT ViT-B + text encoder: ~2 GB in fp32 - they do).
- "fsdp": ``torch.distributed.fsdp.fully_shard`` (FSDP2). Parameters, gradients and optimizer moments are sharded
  over the processes; each encoder, and each block of every ``nn.ModuleList`` inside an encoder (the transformer
  blocks), is one unit gathered just before it runs. For encoders too large to train replicated.

A single process uses neither (``SingleProcess``). Whatever the strategy, checkpoints hold the FULL model and the
FULL optimizer state in the same format (gathered onto rank 0, on the CPU), so a run resumes at any world size and
with either strategy; no per-rank shard files exist.

``prepare_model`` applies the speed options that do not depend on the strategy: ``torch.compile`` of each encoder
and the channels-last memory format for convolution weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import MedclipError
from ..registry import Registry
from .launch import Runtime


class ParallelError(MedclipError, RuntimeError):
    """A parallel set-up that cannot work (e.g. FSDP with a modality absent from some ranks' micro-batch)."""


class SingleProcess:
    """One process: no wrapping; the full state is the model's and the optimizer's own state dicts.

    Args:
        runtime: the process layout (world size 1 here; subclasses use it).
    """

    name = "single"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training loop calls forward on."""
        return model

    def no_sync(self, wrapped: nn.Module):
        """Skip the gradient all-reduce of a micro-step whose gradients are only accumulated."""
        return nullcontext()

    def replicated_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Model parameters the wrapper does not average; the trainer all-reduces their gradients itself."""
        return []

    def clip_grad_norm(self, parameters: Iterable[nn.Parameter], max_norm: float) -> float:
        """Clip the global gradient norm of ``parameters`` to ``max_norm``; returns the norm before clipping."""
        return float(torch.nn.utils.clip_grad_norm_(list(parameters), max_norm))

    def full_model_state(self, model: nn.Module) -> dict[str, Tensor] | None:
        """The full model state dict on rank 0; None means "read it from the module" (nothing to gather)."""
        return None

    def full_optimizer_state(
        self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any] | None:
        """The full optimizer state dict (``Optimizer.state_dict`` format) on rank 0; None = the optimizer's own."""
        return None

    def load_checkpoint(
        self, path: str | Path, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        """Load a checkpoint's full weights (model and loss) and full optimizer state, on every rank."""
        from ..checkpoint import read_weights
        from .state import read_optimizer_state

        model_state, loss_state = read_weights(path)
        self.load_model_state(model, model_state)
        criterion.load_state_dict(loss_state, strict=True)
        optimizer_state = read_optimizer_state(path)
        if optimizer_state is not None:
            self.load_optimizer_state(model, criterion, optimizer, optimizer_state)

    def load_model_state(self, model: nn.Module, state: Mapping[str, Tensor]) -> None:
        """Load a full model state dict (every rank passes the same full state)."""
        getattr(model, "module", model).load_state_dict(state, strict=True)

    def load_optimizer_state(
        self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]
    ) -> None:
        """Load a full optimizer state dict (``Optimizer.state_dict`` format, every rank passes the same one)."""
        optimizer.load_state_dict(dict(state))


PARALLEL_STRATEGIES: Registry[type[SingleProcess]] = Registry("parallel strategy (train.parallel)")


@PARALLEL_STRATEGIES.register("ddp")
class DataParallel(SingleProcess):
    """``DistributedDataParallel``: the whole model on every process, gradients averaged by all-reduce."""

    name = "ddp"

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
        # find_unused_parameters: a batch may lack a modality entirely, leaving its encoder unused.
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    def no_sync(self, wrapped: nn.Module):
        return wrapped.no_sync()


@PARALLEL_STRATEGIES.register("fsdp")
class FullyShardedDataParallel(SingleProcess):
    """FSDP2 (``fully_shard``): parameters, gradients and optimizer moments sharded over the processes.

    Units: each encoder, and each item of every ``nn.ModuleList`` inside it (transformer blocks), so only a block or
    two (the running one, the prefetched next) have their full parameters on a device at a time. The projection heads
    belong to the root unit. Scalar parameters (the logit scale) cannot be sharded: they stay replicated and the
    trainer averages their gradients itself.

    Every rank must run the same units in the same order. An encoder only runs where its modality is present, so a
    modality present on some ranks' micro-batch and absent from another's is refused with a clear error (use "ddp"
    for very sparse modalities, or a larger ``train.batch_size``).
    """

    name = "fsdp"

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import fully_shard

        names_before = [name for name, _ in model.named_parameters()]
        _broadcast_from_rank_zero(model)  # ranks are seeded differently; FSDP, unlike DDP, does not sync the init
        encoders = getattr(model, "encoders", None)
        if not isinstance(encoders, nn.ModuleDict):
            raise ParallelError("train.parallel=fsdp needs a ContrastiveModel (a model with an `encoders` ModuleDict)")
        for encoder in encoders.values():
            for block in _list_items(encoder):
                fully_shard(block)
            fully_shard(encoder)
        fully_shard(model, ignored_params=set(self.replicated_parameters(model)))
        if [name for name, _ in model.named_parameters()] != names_before:
            # The optimizer's parameter order (and so the checkpoint's optimizer ids) must not depend on the strategy.
            raise ParallelError("fully_shard changed the model's parameter order; checkpoints would not be portable")
        model.register_forward_pre_hook(_refuse_partly_absent_modalities)
        return model

    def no_sync(self, wrapped: nn.Module):
        return _gradient_sync_off(wrapped)

    def replicated_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [parameter for parameter in model.parameters() if parameter.ndim == 0]

    def clip_grad_norm(self, parameters: Iterable[nn.Parameter], max_norm: float) -> float:
        """Norm over sharded (DTensor) and replicated gradients together, then one common scaling of all."""
        from torch.distributed.tensor import DTensor

        parameters = [parameter for parameter in parameters if parameter.grad is not None]
        sharded = [parameter.grad for parameter in parameters if isinstance(parameter.grad, DTensor)]
        replicated = [parameter.grad for parameter in parameters if not isinstance(parameter.grad, DTensor)]
        squares = torch.zeros((), device=self.runtime.device)
        if sharded:
            squares = squares + torch.nn.utils.get_total_norm(sharded).full_tensor().square()  # all-reduce of shards
        if replicated:
            squares = squares + torch.nn.utils.get_total_norm(replicated).square()
        total = squares.sqrt()
        if sharded:
            torch.nn.utils.clip_grads_with_norm_(
                [p for p in parameters if isinstance(p.grad, DTensor)], max_norm, total
            )
        if replicated:
            others = [p for p in parameters if not isinstance(p.grad, DTensor)]
            torch.nn.utils.clip_grads_with_norm_(others, max_norm, total)
        return float(total)

    def full_model_state(self, model: nn.Module) -> dict[str, Tensor] | None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # A collective: every rank takes part; rank 0 receives the full tensors on the CPU, the others an empty dict.
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def full_optimizer_state(
        self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any] | None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        container = _container(model, criterion)
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        by_name = get_optimizer_state_dict(container, optimizer, options=options)  # collective; state keyed by name
        if not self.runtime.is_main:
            return {}
        names = _optimizer_parameter_names(container, optimizer)
        return {
            "state": {index: by_name["state"][name] for index, name in enumerate(names) if name in by_name["state"]},
            "param_groups": optimizer.state_dict()["param_groups"],  # hyper-parameters + integer ids, not sharded
        }

    def load_model_state(self, model: nn.Module, state: Mapping[str, Tensor]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        # Every rank read the same file, so each simply keeps its own shard of the full tensors (no broadcast).
        set_model_state_dict(model, dict(state), options=StateDictOptions(full_state_dict=True, strict=True))

    def load_optimizer_state(
        self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]
    ) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        container = _container(model, criterion)
        names = _optimizer_parameter_names(container, optimizer)
        if len(state["param_groups"]) != len(optimizer.param_groups):
            raise ParallelError("the checkpoint's optimizer has a different number of parameter groups")
        groups = []
        for saved, current in zip(state["param_groups"], optimizer.param_groups, strict=True):
            if len(saved["params"]) != len(current["params"]):
                raise ParallelError("the checkpoint's optimizer covers different parameters than this model's")
            groups.append({**saved, "params": [names[index] for index in saved["params"]]})
        by_name = {
            "state": {names[int(index)]: value for index, value in state["state"].items()},
            "param_groups": groups,
        }
        # strict=False only because a parameter that never had a gradient (an unused branch) has no AdamW state,
        # exactly as in Optimizer.state_dict; the groups and parameter counts were checked above.
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_optimizer_state_dict(container, optimizer, by_name, options=options)


def build_parallel(name: str, runtime: Runtime) -> SingleProcess:
    """The strategy named by ``train.parallel`` for a multi-process run; ``SingleProcess`` for one process.

    The name is validated even for one process, so a typo fails on a laptop rather than on the cluster.
    """
    strategy = PARALLEL_STRATEGIES.get(name)
    return strategy(runtime) if runtime.distributed else SingleProcess(runtime)


def prepare_model(model: nn.Module, compile_encoders: bool = False, channels_last: bool = False) -> nn.Module:
    """Speed options, applied before any wrapping (in place; parameter names and checkpoints are unchanged).

    Args:
        model: a ``ContrastiveModel``.
        compile_encoders: ``torch.compile`` each encoder (``nn.Module.compile``: in place, so state-dict keys do not
            get torch.compile's ``_orig_mod.`` prefix). Heads and losses are small and stay eager.
        channels_last: store 4D / 5D convolution weights channels-last (``channels_last_3d`` for 3D convolutions),
            the layout cuDNN's fastest convolution kernels use; the trainer converts inputs to match.
    """
    if channels_last:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
            elif isinstance(module, nn.Conv3d):
                module.to(memory_format=torch.channels_last_3d)
    if compile_encoders:
        for encoder in getattr(model, "encoders", {}).values():
            encoder.compile()
    return model


def to_channels_last(batch: Any) -> Any:
    """4D (B, C, H, W) / 5D (B, C, D, H, W) float tensors of a batch in the channels-last layout (same values)."""
    if isinstance(batch, Tensor) and batch.is_floating_point():
        if batch.ndim == 5:
            return batch.contiguous(memory_format=torch.channels_last_3d)
        if batch.ndim == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, dict):
        return {key: to_channels_last(value) for key, value in batch.items()}
    return batch


def _list_items(module: nn.Module) -> Iterator[nn.Module]:
    """Items of every ``nn.ModuleList`` inside ``module`` (outermost lists only): the transformer blocks."""
    for child in module.children():
        if isinstance(child, nn.ModuleList):
            yield from child
        else:
            yield from _list_items(child)


def _broadcast_from_rank_zero(model: nn.Module) -> None:
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor, src=0)


def _container(model: nn.Module, criterion: nn.Module) -> nn.Module:
    """One module over model and loss, named as the checkpoint names them ("model.*", "loss.*"): the optimizer
    covers both, and the state-dict helpers map optimizer state to parameter names through one module."""
    return nn.ModuleDict({"model": model, "loss": criterion})


def _optimizer_parameter_names(container: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimizer's own order, i.e. the integer ids of ``Optimizer.state_dict``."""
    name_of = {id(parameter): name for name, parameter in container.named_parameters()}
    return [name_of[id(parameter)] for group in optimizer.param_groups for parameter in group["params"]]


@contextmanager
def _gradient_sync_off(model: nn.Module):
    """FSDP2's ``no_sync``: accumulate unsharded gradients locally; the last micro-step reduce-scatters them all."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _refuse_partly_absent_modalities(model: nn.Module, args: tuple) -> None:
    """Forward pre-hook: every rank must run the same encoders, or FSDP's all-gathers would wait forever.

    One small all-reduce of per-modality row counts; the error is raised on every rank at once (no hang).
    """
    batch = args[0] if args else {}
    names = list(model.encoders)
    counts = []
    for name in names:
        mask = batch.get(f"{name}_mask") if name in batch else None
        if name not in batch:
            counts.append(0)
        elif mask is None:
            counts.append(1)
        else:
            counts.append(int(mask.sum()))
    present = torch.tensor([min(count, 1) for count in counts], dtype=torch.float32)  # (M,) 1 = runs its encoder
    device = next(iter(model.parameters())).device
    bounds = torch.cat([present, -present]).to(device)  # (2M,): max of present, and -min of present
    dist.all_reduce(bounds, op=dist.ReduceOp.MAX)
    partly = [
        name for name, high, low in zip(names, bounds[: len(names)], bounds[len(names) :], strict=True) if high > -low
    ]
    if partly:
        raise ParallelError(
            f"train.parallel=fsdp: modality {', '.join(partly)} is absent from the whole micro-batch of some "
            "process but present on others (reason: partly_absent_modality); FSDP needs every process to run the "
            "same encoders. Use train.parallel=ddp or a larger train.batch_size."
        )
