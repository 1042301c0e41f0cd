"""The Hugging Face-style checkpoint folder: README.md model card written at save time (counts only, no identifier,
pseudonym or path), ``medclip export-card``, and loading from a hub repository only when asked, tested offline
against a hub cache folder built here (no network)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

import medclip
from medclip.checkpoint import read_data_provenance
from medclip.cli import main
from medclip.hub import CHECKPOINT_FILES, HubError

HUB_ID = "st-elsewhere-radiology/medclip-pbmc-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_the_card_is_written_at_save_time_with_counts_only(tiny_checkpoint, pbmc_manifest):
    text = (tiny_checkpoint / "README.md").read_text()
    meta = _front_matter(text)
    assert meta["library_name"] == "medclip" and meta["pipeline_tag"] == "feature-extraction"
    assert {"medclip", "expression", "report"} <= set(meta["tags"])
    assert meta["medclip"]["modalities"] == ["expression", "report"] and meta["medclip"]["embed_dim"] == 16
    headings = ("## Modalities and preprocessing", "## Training data (counts only)", "## Intended use", "## Limits")
    assert all(heading in text for heading in headings)
    provenance = read_data_provenance(tiny_checkpoint)
    train_patients = len(provenance["patients"]["train"])
    assert f"| train | {train_patients} |" in text
    # never a pseudonym, a path or a file name of the training data
    for patient in provenance["patients"]["train"][:20]:
        assert patient not in text
    assert str(pbmc_manifest.parent) not in text and "pbmc68k_reduced" not in text and "h5ad" not in text
    assert provenance["manifest_sha256"] not in text


def test_path_options_are_shown_as_set_only(tiny_checkpoint, tmp_path):
    from medclip.model_card import render_model_card

    card = medclip.load_model(tiny_checkpoint).card
    preprocess = json.loads((tiny_checkpoint / "preprocess.json").read_text())
    preprocess["modalities"]["report"]["config"]["hf_model"] = "/data/patients/MRN123/bert"
    preprocess["modalities"]["expression"]["config"]["cache_dir"] = "/home/dr_smith/cache"
    text = render_model_card(card, preprocess)
    assert "MRN123" not in text and "dr_smith" not in text
    assert "hf_model: set (a local path or model name, not shown)" in text
    assert "Not recorded with this checkpoint." in text


def test_export_card_rewrites_the_card(tiny_checkpoint, tmp_path, capsys):
    copy = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoint, copy)
    (copy / "README.md").unlink()  # a checkpoint saved before cards were written
    assert main(["export-card", str(copy)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (copy / "README.md").read_text() == (tiny_checkpoint / "README.md").read_text()


def _hub_cache(tmp_path, checkpoint):
    """A Hugging Face hub cache holding HUB_ID at COMMIT, laid out as huggingface_hub writes it."""
    repo = tmp_path / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return tmp_path / "hub"


def test_a_hub_id_is_resolved_only_when_asked(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the test never touches the network
    monkeypatch.setenv("HF_HUB_CACHE", str(_hub_cache(tmp_path, tiny_checkpoint)))
    with pytest.raises(HubError, match="allow_download=True"):
        medclip.load_model(HUB_ID)
    model = medclip.load_model(HUB_ID, allow_download=True)
    local = medclip.load_model(tiny_checkpoint)
    texts = ["a B lymphocyte."]
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode("report", model.tokenizer(texts)), local.encode("report", local.tokenizer(texts))
        )
    with pytest.raises(HubError, match="could not be resolved"):
        medclip.load_model("st-elsewhere-radiology/not-in-the-cache", allow_download=True)


def test_export_sidecars_hide_path_options_but_keep_vocabularies():
    from medclip.model_card import HIDDEN_PATH, hide_path_options

    state = {
        "config": {"hf_model": "/home/dr_smith/bert", "cache_dir": "", "spacing": [1.0, 1.0, 2.0]},
        "tokenizer": {"kind": "hf", "hf_model": "/home/dr_smith/bert", "json": '{"vocab": {"/": 7}}'},
    }
    hidden = hide_path_options(state)
    assert hidden["config"] == {"hf_model": HIDDEN_PATH, "cache_dir": "", "spacing": [1.0, 1.0, 2.0]}
    assert hidden["tokenizer"]["hf_model"] == HIDDEN_PATH and hidden["tokenizer"]["json"] == state["tokenizer"]["json"]
