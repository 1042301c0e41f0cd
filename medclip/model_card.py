"""The checkpoint's ``README.md``: a model card in the Hugging Face layout, written at save time.

A checkpoint folder (``model.safetensors``, ``config.yaml``, ``preprocess.json``, ``README.md``) can be shared with
``huggingface_hub`` tools unchanged; the hub and its tools read the card's YAML front matter (``library_name``,
``tags``) and show its text. The card says what the model embeds, how each input must be preprocessed, how it was
trained, how much data it saw (counts only), what it is for and where it stops.

Only counts and settings are written: never a patient or study identifier (not even a pseudonym), never a path or a
file name, never a manifest value. Options that hold a local path or model name (``cache_dir``, ``hf_model``,
``patch_weights``, ...) are shown only as set or not. ``medclip export-card CHECKPOINT`` rewrites the card of an
existing checkpoint (for example one saved before cards were written).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

README_FILE = "README.md"
# Option names whose values are local paths or model names: shown as set / not set, never their value.
PATH_LIKE_SUFFIXES = ("dir", "cache", "weights", "model", "path", "file", "root")
LONG_LIST = 12  # longer lists (a lead order is 12) are summarised by their length

DEFAULT_INTENDED_USE = (
    "Research on the institution's own data: embedding studies for retrieval, zero-shot scoring of findings from "
    "prompts, linear probes and as a starting point for fine-tuning. Outputs are similarity scores between "
    "embeddings, not diagnoses."
)
DEFAULT_LIMITS = (
    "Not a medical device and not validated for clinical decisions; every use on patients needs its own evaluation.",
    "Trained on the data counted below only: expect lower performance on other sites, scanners, populations, "
    "languages and report styles (evaluate per site before use).",
    "Inputs must be preprocessed exactly as described (orientation, spacing, windows, sampling rate, tokenizer); "
    "`medclip.load_model` does it and refuses inputs whose preprocessing disagrees with the fingerprint.",
    "Zero-shot probabilities depend on the prompt wording; calibrate on labelled data before reading them as risks.",
)


HIDDEN_PATH = "set (a local path or model name, not shown)"


def is_path_option(key: str, value: Any) -> bool:
    """An option whose name says it holds a local path or model name (``cache_dir``, ``hf_model``, ...), set."""
    return isinstance(value, str) and bool(value) and key.lower().endswith(PATH_LIKE_SUFFIXES)


def hide_path_options(state: Any) -> Any:
    """A copy of a (nested) preprocessing state with every set path option replaced by a note (for files that leave
    the institution: export sidecars). Other values, such as a tokenizer's vocabulary, are kept whole."""
    if isinstance(state, Mapping):
        return {
            key: HIDDEN_PATH if is_path_option(key, value) else hide_path_options(value) for key, value in state.items()
        }
    if isinstance(state, list | tuple):
        return [hide_path_options(item) for item in state]
    return state


def _is_path_like(key: str, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    return key.lower().endswith(PATH_LIKE_SUFFIXES) or "/" in value or "\\" in value or value.startswith("~")


def _shown_option(key: str, value: Any) -> str | None:
    """An option as the card shows it; None to leave it out (empty paths)."""
    if _is_path_like(key, value):
        return HIDDEN_PATH if value else None
    if isinstance(value, list | tuple) and len(value) > LONG_LIST:
        return f"{len(value)} values"
    if isinstance(value, Mapping):
        return f"{len(value)} entries"
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else f"{text[:77]}..."


def preprocessing_summary(state: Mapping[str, Any]) -> dict[str, str]:
    """A modality's options as the card shows them (paths hidden, long values summarised)."""
    config = state.get("config", {}) if isinstance(state, Mapping) else {}
    shown = {}
    for key, value in sorted(config.items()):  # sorted: the saved JSON is, the in-memory state at save time is not
        text = _shown_option(key, value)
        if text is not None:
            shown[key] = text
    tokenizer = state.get("tokenizer") if isinstance(state, Mapping) else None
    if isinstance(tokenizer, Mapping) and "kind" in tokenizer:
        shown["tokenizer"] = str(tokenizer["kind"])
    return shown


def _data_counts(provenance: Mapping[str, Any] | None) -> dict[str, int]:
    """Patients per split (counted from the pseudonyms the checkpoint keeps; the pseudonyms are not written)."""
    patients = (provenance or {}).get("patients") or {}
    order = {split: index for index, split in enumerate(("train", "val", "test"))}
    splits = sorted(patients, key=lambda split: (order.get(split, len(order)), split))
    return {split: len(patients[split]) for split in splits if isinstance(patients[split], Sequence)}


def render_model_card(
    card: Any,
    preprocess: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
    intended_use: str = DEFAULT_INTENDED_USE,
    limits: Sequence[str] = DEFAULT_LIMITS,
) -> str:
    """The text of ``README.md``.

    Args:
        card: the ``ModelCard`` (``config.yaml``).
        preprocess: the content of ``preprocess.json`` (``{"modalities": {name: state}}``).
        provenance: the content of ``data_provenance.json``, or None.
        intended_use: what the model is for.
        limits: where it stops, one item each.
    """
    modalities = list(card.modalities)
    states = preprocess.get("modalities", {})
    model = card.model
    front_matter = {
        "library_name": "medclip",
        "pipeline_tag": "feature-extraction",
        "tags": ["medclip", "contrastive-learning", "medical", *modalities],
        "medclip": {
            "modalities": modalities,
            "embed_dim": model.embed_dim,
            "card_format": card.format,
            "medclip_version": card.medclip_version,
        },
    }
    fingerprint = hashlib.sha256(json.dumps(preprocess, sort_keys=True).encode()).hexdigest()[:16]
    lines = [
        "---",
        yaml.safe_dump(front_matter, sort_keys=False).strip(),
        "---",
        "",
        f"# medclip model: {' + '.join(modalities)}",
        "",
        f"Embeds {', '.join(modalities)} into one {model.embed_dim}-dimensional space (unit vectors; cosine similarity "
        f"compares them), trained contrastively with [medclip](https://pypi.org/project/medclip/) "
        f"{card.medclip_version}.",
        "",
        "## Modalities and preprocessing",
        "",
        f"Each input must be prepared exactly as in training; `preprocess.json` holds the full state "
        f"(fingerprint `{fingerprint}`), which `medclip.load_model` restores as `model.preprocess`.",
        "",
        "| modality | encoder | preprocessing |",
        "|---|---|---|",
    ]
    for name in modalities:
        summary = preprocessing_summary(states.get(name, {}))
        encoder = summary.pop("encoder", "default")
        options = "; ".join(f"{key}: {value}" for key, value in summary.items()).replace("|", "\\|")
        lines.append(f"| `{name}` | {encoder} | {options} |")
    training = dict(card.training)
    lines += ["", "## Training", ""]
    for key in ("recipe", "loss", "steps", "steps_done", "batch_size", "seed"):
        if key in training:
            value = training[key]
            lines.append(f"- {key}: {value if isinstance(value, str) else json.dumps(value)}")
    lines.append(f"- projection heads: {'MLP' if model.head_hidden_dim else 'linear'}; "
                 f"initial temperature {model.init_temperature}")  # fmt: skip
    counts = _data_counts(provenance)
    lines += ["", "## Training data (counts only)", ""]
    if counts:
        lines += ["| split | patients |", "|---|---|"]
        lines += [f"| {split} | {count} |" for split, count in counts.items()]
        lines += ["", "Patients were split by patient (never by study). No identifier, pseudonym or path is stored "
                  "in this card."]  # fmt: skip
    else:
        lines.append("Not recorded with this checkpoint.")
    lines += ["", "## Intended use", "", intended_use, "", "## Limits", ""]
    lines += [f"- {item}" for item in limits]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import medclip",
        "",
        'model = medclip.load_model("path/to/this/folder")  # offline; a hub id needs allow_download=True',
        f'batch = model.preprocess["{modalities[0]}"](["<a path, or a text>"])  # exactly the training preprocessing',
        f'vectors = model.encode("{modalities[0]}", batch)  # (N, {model.embed_dim}) unit vectors',
        "```",
        "",
        "Files: `model.safetensors` (weights), `config.yaml` (model description), `preprocess.json` (preprocessing "
        "state), this card. Nothing in the folder is a pickle.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(
    checkpoint: str | Path, intended_use: str = DEFAULT_INTENDED_USE, limits: Sequence[str] = DEFAULT_LIMITS
) -> Path:
    """(Re)write ``README.md`` of a checkpoint directory from its own files; returns its path."""
    from .atomic import write_text_atomic
    from .checkpoint import PREPROCESS_FILE, check_checkpoint_path, read_card, read_data_provenance

    folder = check_checkpoint_path(checkpoint)
    preprocess = json.loads((folder / PREPROCESS_FILE).read_text())
    text = render_model_card(read_card(folder), preprocess, read_data_provenance(folder), intended_use, limits)
    path = folder / README_FILE
    write_text_atomic(path, text)
    return path
