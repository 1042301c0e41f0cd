"""The "hf" report encoder: checkpoints carry the model's config and tokenizer (no absolute hf_model path), pickled
model folders are refused and converted with ``--from hf_text``, and weights that do not fit are named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import medclip
from medclip.checkpoint import CheckpointError, ModelCard, read_card, save_model
from medclip.embedding import embed
from medclip.factory import ModelConfig, build_modalities, build_model
from medclip.weights.importers import ImportOptions, convert_foreign, register_builtin_importers
from medclip.weights.init_from import init_from_checkpoint, open_init_source, restore_learned_preprocessing
from modalities.report import OfflineModelError

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "the lungs are clear no pleural effusion small nodule in right upper lobe normal chest . , 3 5 cm ##s".split()
TEXTS = ["The lungs are clear. Small nodule in right upper lobe.", "No pleural effusion."]


def _tiny_bert(folder: Path, safetensors: bool = True) -> torch.nn.Module:
    """A tiny BERT and its WordPiece tokenizer in a folder, as a user's local copy of a hub model."""
    folder.mkdir(parents=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizer(vocab=str(vocab))
    config = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48
    )
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if not safetensors:  # an older release: the weights only as a pickle
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return model


def _trained_model(hf_model: Path):
    options = {"encoder": "hf", "hf_model": str(hf_model), "max_tokens": 32}
    modalities = build_modalities({"report": options})
    modalities["report"].fit([modalities["report"].load(text) for text in TEXTS])
    model = build_model(ModelConfig(embed_dim=8), modalities, apply_weights=True).eval()
    with torch.no_grad():  # training moved the encoder away from the folder's weights
        model.encoders["report"].model.embeddings.word_embeddings.weight.mul_(1.5)
    card = ModelCard(modalities={"report": options}, model=ModelConfig(embed_dim=8))
    return model, modalities, card


def test_a_checkpoint_carries_the_hf_model_files_and_loads_after_both_folders_moved(tmp_path):
    _tiny_bert(tmp_path / "bert")
    model, modalities, card = _trained_model(tmp_path / "bert")
    checkpoint = save_model(tmp_path / "run" / "checkpoint", model, modalities, card)
    assert read_card(checkpoint).files == {"report": "files/report"}
    carried = sorted(path.name for path in (checkpoint / "files" / "report").iterdir())
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= set(carried)
    assert not [name for name in carried if name.endswith((".bin", ".safetensors", ".pt", ".pkl", ".py"))]
    for path in (checkpoint / "files" / "report").iterdir():  # the training machine's folder is written nowhere
        assert str(tmp_path) not in path.read_text(errors="replace"), path.name
    expected = embed(model, "report", TEXTS)

    shutil.move(tmp_path / "bert", tmp_path / "elsewhere_bert")  # the hf_model folder is gone ...
    shutil.move(tmp_path / "run", tmp_path / "moved_run")  # ... and the checkpoint moved
    loaded = medclip.load_model(tmp_path / "moved_run" / "checkpoint")
    torch.testing.assert_close(embed(loaded, "report", TEXTS), expected)
    saved = load_file(str(tmp_path / "moved_run" / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(value, saved[f"model.{key}"]) for key, value in loaded.state_dict().items())

    # a new run can take the tower from the moved checkpoint too (train.init_from): the model folder is not needed
    new_run = build_modalities({"report": {"encoder": "hf", "hf_model": str(tmp_path / "bert"), "max_tokens": 32}})
    source = open_init_source(tmp_path / "moved_run" / "checkpoint", ["report"], [])
    assert restore_learned_preprocessing(source, new_run) == ["report"]
    warm = build_model(ModelConfig(embed_dim=8), new_run, apply_weights=True).eval()
    init_from_checkpoint(warm, source)
    torch.testing.assert_close(embed(warm, "report", TEXTS), expected)

    # a card naming a folder outside its checkpoint is refused
    config = tmp_path / "moved_run" / "checkpoint" / "config.yaml"
    config.write_text(config.read_text().replace("files/report", "../../elsewhere_bert"))
    with pytest.raises(ValueError, match="not inside the checkpoint"):
        medclip.load_model(tmp_path / "moved_run" / "checkpoint")


def test_a_pickled_model_folder_is_refused_then_converted_with_hf_text(tmp_path):
    register_builtin_importers()
    source = _tiny_bert(tmp_path / "bert_bin", safetensors=False)
    with pytest.raises(OfflineModelError, match="--from hf_text --trust-pickle"):
        _trained_model(tmp_path / "bert_bin")
    with pytest.raises(CheckpointError, match="pickle-based"):
        convert_foreign(tmp_path / "bert_bin", tmp_path / "bert_safe", "hf_text")
    result = convert_foreign(
        tmp_path / "bert_bin", tmp_path / "bert_safe", "hf_text", options=ImportOptions(trust_pickle=True)
    )
    assert result.settings == {"encoder": "hf", "hf_model": str(tmp_path / "bert_safe")}
    written = sorted(path.name for path in (tmp_path / "bert_safe").iterdir())
    assert "model.safetensors" in written and "pytorch_model.bin" not in written and "vocab.txt" in written
    model, modalities, _ = _trained_model(tmp_path / "bert_safe")
    batch = modalities["report"].collate([modalities["report"].transforms(False)(modalities["report"].load(TEXTS[0]))])
    converted = transformers.AutoModel.from_pretrained(str(tmp_path / "bert_safe"), use_safetensors=True).eval()
    ids = batch["report"]["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(converted(input_ids=ids).last_hidden_state, source(input_ids=ids).last_hidden_state)


def test_hf_weights_that_do_not_fit_their_config_are_named(tmp_path):
    _tiny_bert(tmp_path / "bert")
    weights = load_file(str(tmp_path / "bert" / "model.safetensors"))
    dropped = sorted(key for key in weights if "encoder.layer.0.attention.self.query" in key)
    save_file({k: v for k, v in weights.items() if k not in dropped}, str(tmp_path / "bert" / "model.safetensors"))
    with pytest.raises(
        OfflineModelError, match=r"do not fit its config: 2 missing \(encoder.layer.0.attention.self.query"
    ):
        _trained_model(tmp_path / "bert")
    assert json.loads((tmp_path / "bert" / "config.json").read_text())["hidden_size"] == 24
