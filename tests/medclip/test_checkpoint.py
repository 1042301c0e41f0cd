"""Checkpoints: safetensors round trip, preprocessing travels with the weights, pickles refused, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

import medclip
from medclip.checkpoint import PREPROCESS_FILE, CheckpointError
from medclip.embedding import embed
from recipes.pretrain import pretrain
from tests.helpers import checkpoint_weights


def test_round_trip_reloads_model_and_preprocessing(small_experiment, pbmc_manifest):
    result = pretrain(small_experiment("train.steps=3"))
    checkpoint = result.checkpoint
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "README.md",  # the model card (Hugging Face layout)
        "config.yaml",
        "data_provenance.json",
        "model.safetensors",
        "optimizer.safetensors",
        "preprocess.json",
        "trainer_state.json",
    ]
    provenance = json.loads((checkpoint / "data_provenance.json").read_text())
    assert len(provenance["manifest_sha256"]) == 64
    train_patients = set(provenance["patients"]["train"])
    assert len(train_patients) == len(result.splits["train"])
    assert not train_patients & set(provenance["patients"]["test"])
    assert all(patient.startswith("p-") for patient in train_patients)  # pseudonyms, never the manifest's ids
    preprocess_state = json.loads((checkpoint / PREPROCESS_FILE).read_text())["modalities"]
    assert set(preprocess_state) == {"expression", "report"}

    model = medclip.load_model(checkpoint)
    saved = checkpoint_weights(checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[f"model.{key}"]), key
    # The reloaded model embeds new inputs through the exact preprocessing it was trained with.
    refs = [f"{pbmc_manifest.parent}/pbmc68k_reduced.h5ad#row={i}" for i in range(5)]
    cells = embed(model, "expression", refs)
    texts = embed(model, "report", ["a B lymphocyte.", "a natural killer cell."])
    assert cells.shape == (5, 16) and texts.shape == (2, 16)
    assert torch.allclose(cells.norm(dim=-1), torch.ones(5), atol=1e-5)
    # Same inputs, same embeddings: reloading twice is deterministic (eval mode, same tokenizer and vocabulary).
    model_again = medclip.load_model(checkpoint)
    assert torch.allclose(embed(model_again, "expression", refs), cells)


def test_resume_gives_identical_weights(small_experiment, tmp_path):
    """2N steps straight == N steps, stop, resume, N steps: same weights, optimizer state, RNG and sample order."""
    straight = pretrain(small_experiment("train.steps=6", out=tmp_path / "straight"))
    stopped = pretrain(small_experiment("train.steps=6", "train.stop_at=3", out=tmp_path / "stopped"))
    assert json.loads((stopped.checkpoint / "trainer_state.json").read_text())["step"] == 3
    resumed = pretrain(
        small_experiment("train.steps=6", f"train.resume={stopped.checkpoint}", out=tmp_path / "resumed")
    )
    assert json.loads((resumed.checkpoint / "trainer_state.json").read_text())["step"] == 6
    a, b = checkpoint_weights(straight.checkpoint), checkpoint_weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    changed = False
    for key in a:
        assert torch.equal(a[key], b[key]), key
        changed |= not torch.equal(a[key], checkpoint_weights(stopped.checkpoint)[key])
    assert changed  # the resumed half really trained


def test_resume_refuses_a_different_config(small_experiment, tmp_path):
    stopped = pretrain(small_experiment("train.steps=4", "train.stop_at=1", out=tmp_path / "a"))
    with pytest.raises(ValueError, match="differ"):
        pretrain(small_experiment("train.steps=4", "modalities.report.width=48", f"train.resume={stopped.checkpoint}"))


def test_pickle_and_incomplete_checkpoints_are_refused(tmp_path):
    pickled = tmp_path / "weights.pt"
    pickled.write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match="never unpickles"):
        medclip.load_model(pickled)
    incomplete = tmp_path / "ckpt"
    incomplete.mkdir()
    (incomplete / "config.yaml").write_text("{}")
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        medclip.load_model(incomplete)


def test_failed_save_keeps_previous_checkpoint(small_experiment, tmp_path, monkeypatch):
    from medclip import checkpoint as checkpoint_module

    result = pretrain(small_experiment("train.steps=2", out=tmp_path / "run"))
    before = checkpoint_weights(result.checkpoint)
    model = medclip.load_model(result.checkpoint)
    card = checkpoint_module.read_card(result.checkpoint)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        checkpoint_module.save_model(result.checkpoint, model, model.preprocess.modalities, card)
    after = checkpoint_weights(result.checkpoint)
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert not [p for p in result.checkpoint.parent.iterdir() if "staging" in p.name]
