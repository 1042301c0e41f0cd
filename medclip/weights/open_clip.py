"""``--from open_clip``: an open_clip / OpenAI-CLIP checkpoint, either tower.

- visual tower -> ``timm_backbone`` (the wsi patch encoder, any image encoder on a timm backbone): timm knows the
  OpenAI-CLIP layouts (``vision_transformer`` converts ViTs, ``byobnet`` the modified ResNets with their attention
  pool). The timm model is read off the weights (patch size, width, depth, image size; for ResNets the stage
  depths) unless ``--arch`` names it; ViTs trained with QuickGELU (OpenAI's weights, ``*-quickgelu`` models) need
  ``--quickgelu``: the activation is not visible in the weights. open_clip towers that are timm models already
  (``visual.trunk.*``) need ``--arch`` (the config's ``timm_model_name``). CLIP's final projection is dropped: it
  maps onto CLIP's joint space, and medclip's projection head learns that role.
- text tower -> ``clip_text`` (the report plugin's ``clip_text`` encoder, open_clip's names key for key), with
  CLIP's tokenizer built from its merges file and stored in the file, and the report options it needs.

The pixel statistics written into the file are OpenAI CLIP's (open_clip's default for these towers); a model trained
with others needs ``--pixel-mean`` / ``--pixel-std``.
"""

from __future__ import annotations

import json
import re

from torch import Tensor

from ..registry import lazy_import
from .clip_vocabulary import clip_tokenizer_json
from .files import PIXEL_MEAN, PIXEL_STD, TOKENIZER
from .importers import BACKBONE_SETTING, Converted, Importer, ImportOptions
from .strict import WeightsError, check_tensors
from .timm_backbone import filter_checkpoint, fit_backbone, meta_backbone

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEXT_DROPPED = ("text_projection", "logit_scale", "logit_bias", "attn_mask")  # not part of the text encoder
HEAD_WIDTH = 64  # open_clip's width per attention head (heads = width / 64)


def _visual(state: dict[str, Tensor]) -> dict[str, Tensor]:
    visual = {key: value for key, value in state.items() if key.startswith("visual.")}
    if not visual:
        raise WeightsError("the checkpoint has no visual tower (no visual.* tensors)")
    return visual


def _vit_candidates(visual: dict[str, Tensor], quickgelu: bool) -> list[str]:
    """timm CLIP ViTs with the weights' patch size and image size (width and depth are checked by fitting)."""
    timm = lazy_import("timm", "open_clip weight conversion")
    patch = int(visual["visual.conv1.weight"].shape[-1])
    grid = round((visual["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    act = "quickgelu_" if quickgelu else ""
    return timm.list_models(f"vit_*_patch{patch}_clip_{act}{grid * patch}")


def _resnet_candidates() -> list[str]:
    timm = lazy_import("timm", "open_clip weight conversion")
    return [name for name in timm.list_models("resnet*_clip") if not name.endswith("_gap")]


def _fitting_backbone(visual: dict[str, Tensor], candidates: list[str], what: str) -> tuple[str, dict, list[str]]:
    """The first candidate whose converted tensors fit exactly; the closest one's differences otherwise."""
    best: tuple[int, str, str] | None = None
    for name in candidates:
        model = meta_backbone(name)
        converted = filter_checkpoint(visual, model)
        try:
            tensors, dropped = fit_backbone(converted, model, name)
        except WeightsError:
            check = check_tensors(model.state_dict(), converted)
            size = len(check.missing) + len(check.unexpected) + len(check.mismatched)
            if best is None or size < best[0]:
                best = (size, name, check.describe())
            continue
        return name, tensors, dropped
    closest = f"; closest: {best[1]} ({best[2]})" if best else ""
    raise WeightsError(
        f"no timm model holds this {what} (tried {', '.join(candidates) or 'none'}){closest}. Name the timm model with "
        "--arch, and add --quickgelu for weights trained with QuickGELU"
    )


def convert_visual(state: dict[str, Tensor], options: ImportOptions) -> Converted:
    """The visual tower onto a timm backbone (see the module docstring)."""
    visual = _visual(state)
    if any(key.startswith("visual.trunk.") for key in visual):
        if not options.arch:
            raise WeightsError(
                "this open_clip visual tower is a timm model (visual.trunk.*): name it with --arch (the model "
                "config's timm_model_name)"
            )
        model = meta_backbone(options.arch)
        trunk = {key[len("visual.trunk.") :]: value for key, value in visual.items() if key.startswith("visual.trunk.")}
        tensors, dropped = fit_backbone(filter_checkpoint(trunk, model), model, f"visual tower as {options.arch}")
        dropped += sorted(key for key in visual if not key.startswith("visual.trunk."))
        name = options.arch
    else:
        if "visual.class_embedding" in visual:
            candidates, what = _vit_candidates(visual, options.quickgelu), "CLIP ViT"
        elif "visual.attnpool.c_proj.weight" in visual:
            candidates, what = _resnet_candidates(), "CLIP ResNet"
        else:
            raise WeightsError(
                "the visual tower is neither a CLIP ViT nor a CLIP ResNet; name a timm model with --arch"
            )
        if options.arch:
            candidates = [options.arch]
        name, tensors, dropped = _fitting_backbone(visual, candidates, what)
    notes = [f"visual tower -> timm {name}"]
    if dropped:
        notes.append(f"dropped CLIP's image projection ({', '.join(dropped)}): medclip's projection head replaces it")
    notes.append("not converted: the text tower (convert it with --to report)")
    metadata = {PIXEL_MEAN: json.dumps(list(OPENAI_CLIP_MEAN)), PIXEL_STD: json.dumps(list(OPENAI_CLIP_STD))}
    return Converted(tensors, {BACKBONE_SETTING: name}, metadata, notes)


def convert_text(state: dict[str, Tensor], options: ImportOptions) -> Converted:
    """The text transformer onto the report plugin's ``clip_text`` encoder, with CLIP's tokenizer."""
    if any(key.startswith("text.") for key in state):  # open_clip's CustomTextCLIP keeps its text tower under text.
        if any(key.startswith("text.transformer.embeddings") for key in state):
            raise WeightsError(
                "this open_clip model's text tower is a Hugging Face model (text.transformer.*); it does not fit the "
                "clip_text encoder"
            )
        state = {key[len("text.") :]: value for key, value in state.items() if key.startswith("text.")}
    text = {
        key: value
        for key, value in state.items()
        if not key.startswith("visual.") and key.split(".")[0] not in TEXT_DROPPED
    }
    if "token_embedding.weight" not in text or "positional_embedding" not in text:
        raise WeightsError("the checkpoint has no CLIP text tower (token_embedding.weight, positional_embedding)")
    unknown = sorted(
        key
        for key in text
        if not re.match(r"(token_embedding|positional_embedding|ln_final|transformer\.resblocks\.\d+)\b", key)
    )
    if unknown:
        raise WeightsError(
            f"the text tower holds tensors the clip_text encoder has no place for: {', '.join(unknown[:8])}"
        )
    vocab_size, width = (int(size) for size in text["token_embedding.weight"].shape)
    layers = len({key.split(".")[2] for key in text if key.startswith("transformer.resblocks.")})
    heads = options.heads or max(1, width // HEAD_WIDTH)
    tokenizer = clip_tokenizer_json(options.vocab or None)
    from tokenizers import Tokenizer

    rows = Tokenizer.from_str(tokenizer).get_vocab_size()
    if rows != vocab_size:
        raise WeightsError(
            f"the text tower's token embedding has {vocab_size} rows but CLIP's tokenizer has {rows} ids; "
            "pass --vocab with the merges file the tower was trained with"
        )
    settings = {
        "encoder": "clip_text_quickgelu" if options.quickgelu else "clip_text",
        "width": width,
        "layers": layers,
        "heads": heads,
        "max_tokens": int(text["positional_embedding"].shape[0]),
        "vocab_size": vocab_size,
    }
    dropped = sorted({key.split(".")[0] for key in state if key.split(".")[0] in TEXT_DROPPED})
    notes = [f"text tower -> report clip_text ({layers} blocks, width {width}, {heads} heads: width / {HEAD_WIDTH})"]
    if dropped:
        notes.append(f"dropped {', '.join(dropped)}: medclip's projection head and loss replace them")
    notes.append("not converted: the visual tower (convert it with --to wsi)")
    return Converted(text, settings, {TOKENIZER: tokenizer}, notes)


OPEN_CLIP = Importer(
    name="open_clip",
    description="an open_clip / OpenAI-CLIP checkpoint: visual tower -> timm backbone (wsi), text tower -> report",
    parts={"timm_backbone": convert_visual, "clip_text": convert_text},
)
