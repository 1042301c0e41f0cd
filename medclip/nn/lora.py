"""Low-rank adapters (LoRA, Hu et al. 2021) on an encoder's linear and convolution layers, injected by module name.

A pretrained tower (a clinical BERT, a pathology ViT) is adapted by learning ``W + (alpha / r) * B @ A`` with the
base weight ``W`` frozen and only the small ``A`` (r x in) and ``B`` (out x r) trained: a few percent of the
parameters, optimizer moments only for those, and one tower can serve several fine-tunings. ``B`` starts at zero, so
an adapted model computes exactly what the pretrained one did until training moves it.

Two forms, chosen per layer so that every code path sees the adapter:

- ``LoRALinear`` / ``LoRAConv1d|2d|3d``: the layer's output plus the adapter's output (PEFT's form, with input
  dropout). For layers that their parent calls as modules: MONAI's and timm's attention and MLP linears, Hugging
  Face BERT's, the linears and convolutions of MLP and ResNet encoders.
- ``LowRankDelta``: a ``torch.nn.utils.parametrize`` parametrization that makes the weight itself ``W + s * B @ A``.
  For weights PyTorch reads directly instead of calling a module: ``nn.MultiheadAttention``'s in-projection and
  out-projection, and the linears of ``nn.TransformerEncoderLayer``, whose inference fast path
  (``torch._transformer_encoder_layer_fwd``) passes ``linear1.weight`` to a fused kernel. An output-side adapter would
  silently do nothing there. No input dropout in this form (``lora.dropout`` must then be 0).

Both keep the base weight under its own name (``weight``; parametrized: ``parametrizations.weight.original``) and add
``lora_A`` / ``lora_B`` tensors, so checkpoints stay plain safetensors and ``medclip.load_model`` rebuilds the same
structure from the model card's ``lora`` options. ``merge_lora`` folds the adapters into the base weights (for export):
the merged model has exactly the state-dict keys of the model built without ``lora``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..config import ConfigError
from ..types import LoRAConfig

ADAPTER_PARAMETERS = ("lora_A", "lora_B")

# The attention and MLP linears of the architectures medclip encoders are built from, by the names their libraries
# give them. A pattern matches a module whose dotted name ends with ".pattern" (see ``matches``).
ATTENTION_MLP_TARGETS: dict[str, tuple[str, ...]] = {
    # nn.TransformerEncoderLayer: report "transformer", ECG "vit1d", expression "gene_transformer", WSI "transformer"
    "pytorch": ("self_attn", "out_proj", "linear1", "linear2"),
    # MONAI TransformerBlock (CT / OCT "vit"): SABlock.qkv / out_proj, MLPBlock.linear1 / linear2
    "monai": ("qkv", "out_proj", "linear1", "linear2"),
    # timm Vision Transformers (WSI patch encoders): Attention.qkv / proj, Mlp.fc1 / fc2
    "timm": ("qkv", "attn.proj", "fc1", "fc2"),
    # Hugging Face BERT / RoBERTa / BiomedBERT (report "hf"): self-attention and the two feed-forward linears; the
    # pooler is left alone (medclip's report encoder never uses it)
    "huggingface": ("query", "key", "value", "output.dense", "intermediate.dense", "q_proj", "k_proj", "v_proj"),
}


def _adapter_a(rows: int, columns: int, like: Tensor) -> nn.Parameter:
    """A (rows, columns) down-projection initialised as ``nn.Linear`` (and PEFT) initialise weights."""
    weight = torch.empty(rows, columns, dtype=like.dtype, device=like.device)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return nn.Parameter(weight)


class LoRALinear(nn.Linear):
    """``base(x) + (alpha / r) * B(A(dropout(x)))`` with the base ``weight`` / ``bias`` frozen.

    Still an ``nn.Linear`` (same ``weight`` and ``bias`` parameters, same state-dict keys plus ``lora_A`` and
    ``lora_B``), so code that inspects linears keeps working.

    Args:
        base: the linear layer to adapt; its parameters are reused, not copied.
        r: rank of the adapter.
        alpha: scale numerator; the update is multiplied by ``alpha / r``.
        dropout: dropout on the adapter's input.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        nn.Module.__init__(self)  # not nn.Linear's: the weights are the base layer's
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_A = _adapter_a(r, base.in_features, base.weight)  # (r, in)
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, dtype=base.weight.dtype, device=base.weight.device)
        )
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (..., out)
        return F.linear(x, self.weight, self.bias) + self.scaling * update

    def delta_weight(self) -> Tensor:
        """(out, in) what the adapter adds to ``weight``."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function (weight + delta), with the same parameter names."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.weight.float() + self.delta_weight().float())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        linear.weight.requires_grad_(self.weight.requires_grad)
        if self.bias is not None:
            linear.bias.requires_grad_(self.bias.requires_grad)
        linear.train(self.training)
        return linear

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}"


class _LoRAConv:
    """Shared by ``LoRAConv1d/2d/3d``: ``conv(x) + (alpha / r) * B(A(dropout(x)))``, A a convolution with the base's
    kernel, stride, padding and dilation onto r channels, B a 1x1 convolution back to the output channels."""

    _plain: type[nn.Module]
    _pointwise: Any

    def _setup(self, base: nn.Module, r: int, alpha: float, dropout: float) -> None:
        nn.Module.__init__(self)
        for attribute in (
            "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
            "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice",
        ):  # fmt: skip
            setattr(self, attribute, getattr(base, attribute))
        self.weight = base.weight
        self.bias = base.bias
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        like = base.weight
        down = torch.empty(r, base.in_channels, *base.kernel_size, dtype=like.dtype, device=like.device)
        nn.init.kaiming_uniform_(down, a=math.sqrt(5))
        self.lora_A = nn.Parameter(down)  # (r, in, *kernel)
        ones = (1,) * len(base.kernel_size)
        self.lora_B = nn.Parameter(torch.zeros(base.out_channels, r, *ones, dtype=like.dtype, device=like.device))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        hidden = self._conv_forward(self.lora_dropout(x), self.lora_A, None)  # (B, r, *spatial_out)
        update = self._pointwise(hidden, self.lora_B)  # (B, out, *spatial_out)
        return self._conv_forward(x, self.weight, self.bias) + self.scaling * update

    def delta_weight(self) -> Tensor:
        """(out, in, *kernel) what the adapter adds to ``weight``: B's 1x1 kernel composed with A."""
        up = self.lora_B.flatten(1)  # (out, r)
        return self.scaling * torch.einsum("or,ri...->oi...", up, self.lora_A)

    def merged(self) -> nn.Module:
        conv = self._plain(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
        ).to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.weight.float() + self.delta_weight().float())
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        conv.weight.requires_grad_(self.weight.requires_grad)
        if self.bias is not None:
            conv.bias.requires_grad_(self.bias.requires_grad)
        conv.train(self.training)
        return conv


class LoRAConv1d(_LoRAConv, nn.Conv1d):
    """``nn.Conv1d`` with a low-rank adapter (ECG ResNets)."""

    _plain, _pointwise = nn.Conv1d, staticmethod(F.conv1d)

    def __init__(self, base: nn.Conv1d, r: int, alpha: float, dropout: float = 0.0) -> None:
        self._setup(base, r, alpha, dropout)


class LoRAConv2d(_LoRAConv, nn.Conv2d):
    """``nn.Conv2d`` with a low-rank adapter (CNN patch encoders)."""

    _plain, _pointwise = nn.Conv2d, staticmethod(F.conv2d)

    def __init__(self, base: nn.Conv2d, r: int, alpha: float, dropout: float = 0.0) -> None:
        self._setup(base, r, alpha, dropout)


class LoRAConv3d(_LoRAConv, nn.Conv3d):
    """``nn.Conv3d`` with a low-rank adapter (3-D ResNets)."""

    _plain, _pointwise = nn.Conv3d, staticmethod(F.conv3d)

    def __init__(self, base: nn.Conv3d, r: int, alpha: float, dropout: float = 0.0) -> None:
        self._setup(base, r, alpha, dropout)


_CONV_ADAPTERS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv1d: LoRAConv1d,
    nn.Conv2d: LoRAConv2d,
    nn.Conv3d: LoRAConv3d,
}
_ADAPTED_TYPES = (LoRALinear, LoRAConv1d, LoRAConv2d, LoRAConv3d)


class LowRankDelta(nn.Module):
    """Parametrization ``W -> W + (alpha / r) * B @ A`` of a (out, in) weight that PyTorch reads directly.

    Args:
        weight: the weight being parametrized (for its shape, dtype and device).
        r: rank; alpha: scale numerator.
    """

    def __init__(self, weight: Tensor, r: int, alpha: float) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_A = _adapter_a(r, in_features, weight)  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, dtype=weight.dtype, device=weight.device))

    def forward(self, weight: Tensor) -> Tensor:
        return weight + self.scaling * (self.lora_B @ self.lora_A)  # (out, in)


# --- finding the layers to adapt ------------------------------------------------------------------------------------
_WEIGHT_READERS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_MHA_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def matches(name: str, pattern: str) -> bool:
    """Whether module ``name`` is targeted by ``pattern``: a glob when it holds ``*?[``, else a dotted-name suffix."""
    if any(character in pattern for character in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern or name.endswith("." + pattern)


def _parent_name(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _adaptation(name: str, module: nn.Module, modules: Mapping[str, nn.Module]) -> str | None:
    """How a module is adapted: "linear" / "conv" (output-side), "weight" / "attention" (parametrized), or None."""
    if isinstance(module, _ADAPTED_TYPES):
        return None  # already adapted
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, nn.Linear):
        parent = modules.get(_parent_name(name)) if name else None
        return "weight" if isinstance(parent, _WEIGHT_READERS) else "linear"
    if type(module) in _CONV_ADAPTERS and getattr(module, "groups", 1) == 1:
        return "conv"
    return None


def adaptable_modules(encoder: nn.Module) -> dict[str, str]:
    """Every module LoRA can adapt in ``encoder``: name -> how ("linear", "conv", "weight", "attention")."""
    modules = dict(encoder.named_modules())
    found = {}
    for name, module in modules.items():
        if not name or ".parametrizations." in f".{name}.":
            continue
        kind = _adaptation(name, module, modules)
        if kind is not None:
            found[name] = kind
    return found


def candidate_patterns(names: Iterable[str], limit: int = 24) -> list[str]:
    """Module names with block numbers written as ``*`` (``blocks.*.attn.qkv``): globs a user can paste as targets."""
    patterns = list(dict.fromkeys(re.sub(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.|$)", "*", name) for name in names))
    return patterns[:limit] + ([f"... ({len(patterns) - limit} more)"] if len(patterns) > limit else [])


def default_targets(encoder: nn.Module) -> list[str]:
    """The patterns ``lora: {targets: []}`` means for ``encoder``.

    An encoder may declare its own (a ``lora_targets`` attribute, e.g. a third-party plugin's). Otherwise: the
    attention and MLP linears of ``ATTENTION_MLP_TARGETS`` that the encoder has; an encoder without any (an MLP, a
    ResNet, attention-MIL) gets every linear and (ungrouped) convolution.
    """
    declared = getattr(encoder, "lora_targets", None)
    if declared:
        return list(declared)
    names = list(adaptable_modules(encoder))
    known = dict.fromkeys(pattern for patterns in ATTENTION_MLP_TARGETS.values() for pattern in patterns)
    found = [pattern for pattern in known if any(matches(name, pattern) for name in names)]
    return found or ["*"]


def resolve_targets(encoder: nn.Module, patterns: list[str], modality: str) -> dict[str, str]:
    """The modules ``patterns`` select (name -> how they are adapted), checked before anything is changed.

    Raises:
        ConfigError: a pattern that selects no module LoRA can adapt, naming the pattern and the candidates.
    """
    adaptable = adaptable_modules(encoder)
    all_names = [name for name, _ in encoder.named_modules() if name]
    selected: dict[str, str] = {}
    for pattern in patterns:
        hits = [name for name in adaptable if matches(name, pattern)]
        if not hits:
            others = [name for name in all_names if matches(name, pattern)]
            seen = ""
            if others:
                kinds = sorted({type(encoder.get_submodule(name)).__name__ for name in others})
                seen = f" It matches only modules LoRA cannot adapt ({', '.join(kinds)})."
            raise ConfigError(
                f"modalities.{modality}.lora.targets: {pattern!r} matches no linear, convolution or attention layer "
                f"of the {type(encoder).__name__} encoder.{seen} Candidates: "
                f"{', '.join(candidate_patterns(adaptable)) or 'none (this encoder has no layer LoRA can adapt)'}"
            )
        selected.update({name: adaptable[name] for name in hits})
    return selected


# --- injecting and merging ------------------------------------------------------------------------------------------
def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent = root.get_submodule(_parent_name(name))
    setattr(parent, name.rsplit(".", 1)[-1], module)


def _parametrize(module: nn.Module, tensor_name: str, config: LoRAConfig) -> None:
    weight = getattr(module, tensor_name)
    if weight is None or weight.dim() != 2:
        return
    parametrize.register_parametrization(module, tensor_name, LowRankDelta(weight, config.r, config.alpha))


def inject_lora(encoder: nn.Module, config: LoRAConfig, modality: str) -> dict[str, str]:
    """Add adapters to the layers ``config.targets`` select (default: ``default_targets``), in place.

    Every target is resolved first, so a bad pattern leaves the encoder untouched. Freezing the rest of the encoder
    is the caller's (``medclip.nn.tuning``).

    Returns:
        Adapted module name -> how it was adapted.

    Raises:
        ConfigError: a pattern that selects nothing; ``dropout`` > 0 on layers adapted on the weight.
    """
    selected = resolve_targets(encoder, list(config.targets) or default_targets(encoder), modality)
    on_weight = [name for name, kind in selected.items() if kind in ("weight", "attention")]
    if config.dropout > 0 and on_weight:
        raise ConfigError(
            f"modalities.{modality}.lora.dropout: PyTorch's MultiheadAttention and TransformerEncoderLayer read these "
            f"weights directly, so their adapters live on the weight and have no input to drop out "
            f"({', '.join(candidate_patterns(on_weight, 6))}). Set lora.dropout: 0, or target other layers."
        )
    for name, kind in selected.items():
        module = encoder.get_submodule(name)
        if kind == "linear":
            _replace(encoder, name, LoRALinear(module, config.r, config.alpha, config.dropout))
        elif kind == "conv":
            _replace(encoder, name, _CONV_ADAPTERS[type(module)](module, config.r, config.alpha, config.dropout))
        elif kind == "weight":
            _parametrize(module, "weight", config)
        else:  # nn.MultiheadAttention: its in-projection (the out-projection is the "out_proj" linear)
            for tensor_name in _MHA_WEIGHTS:
                if getattr(module, tensor_name, None) is not None:
                    _parametrize(module, tensor_name, config)
    return selected


def is_adapter_parameter(name: str) -> bool:
    """Whether a parameter (by its dotted name) belongs to a LoRA adapter."""
    return name.rsplit(".", 1)[-1] in ADAPTER_PARAMETERS


def has_lora(model: nn.Module) -> bool:
    return any(is_adapter_parameter(name) for name, _ in model.named_parameters())


def merge_lora(model: nn.Module) -> list[str]:
    """Fold every adapter into its base weight, in place; the model then has no adapter and computes the same.

    The merged model's state-dict keys are those of the model built without ``lora`` (export can load it with the
    card's ``lora`` options removed, ``drop_lora_options``). Parameters keep their ``requires_grad``.

    Returns:
        The names of the merged modules / weights.
    """
    merged: list[str] = []
    for name, module in list(model.named_modules()):
        if isinstance(module, _ADAPTED_TYPES):
            _replace(model, name, module.merged())
            merged.append(name)
        elif parametrize.is_parametrized(module):
            for tensor_name in list(module.parametrizations.keys()):
                chain = module.parametrizations[tensor_name]
                if not all(isinstance(step, LowRankDelta) for step in chain):
                    raise ValueError(f"{name}.{tensor_name} has parametrizations besides LoRA; merge them first")
                requires_grad = chain.original.requires_grad
                with torch.no_grad():
                    parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
                getattr(module, tensor_name).requires_grad_(requires_grad)
                merged.append(f"{name}.{tensor_name}" if name else tensor_name)
    return merged


def drop_lora_options(modalities: Mapping[str, Mapping[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Modality options without ``lora``: the model description of a model after ``merge_lora``."""
    return {
        name: {key: value for key, value in (options or {}).items() if key != "lora"}
        for name, options in modalities.items()
    }
