"""The model API a new user meets: ``encode`` on a collated batch or a modality's input, ``model.tokenizer``,
``model.preprocess[name]``, ``logit_scale`` as a plain property and ``medclip.retrieval_index``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medclip
from medclip.embedding import embed
from medclip.eval.index import EmbeddingIndex


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return medclip.load_model(tiny_checkpoint)


def test_encode_takes_a_collated_batch_or_the_modality_input(model):
    texts = ["a B lymphocyte.", "a natural killer cell.", "a CD14+ monocyte."]
    batch = model.tokenizer(texts)
    assert set(batch) == {"report", "report_mask"}
    with torch.no_grad():
        from_batch = model.encode("report", batch)  # (3, D)
        from_inputs = model.encode("report", batch["report"])  # the modality's own input, every row present
    assert from_batch.shape == (3, model.card.model.embed_dim)
    torch.testing.assert_close(from_batch, from_inputs)
    torch.testing.assert_close(from_batch.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(from_batch, embed(model, "report", texts))  # the batch loop gives the same vectors


def test_encode_gives_zero_rows_where_the_batch_misses_the_modality(model):
    batch = model.preprocess["report"](["a B lymphocyte.", "a natural killer cell."])
    batch["report_mask"] = torch.tensor([True, False])
    with torch.no_grad():
        vectors = model.encode("report", batch)
        alone = model.encode("report", model.tokenizer(["a B lymphocyte."]))
    torch.testing.assert_close(vectors[0], alone[0])
    assert torch.count_nonzero(vectors[1]) == 0


def test_preprocess_per_modality_and_the_tokenizer(model, pbmc_manifest):
    cells = model.preprocess["expression"]([f"{pbmc_manifest.parent / 'pbmc68k_reduced.h5ad'}#row=0"])
    assert cells["expression"].shape[0] == 1 and cells["expression_mask"].tolist() == [True]
    assert "expression" in model.preprocess and sorted(model.preprocess) == ["expression", "report"]
    assert model.preprocess["report"].state()["tokenizer"]["kind"] == "bpe"
    assert model.tokenizer.name == "report"
    single = model.tokenizer("a B lymphocyte.")  # one text, not its characters
    assert single["report"]["input_ids"].shape[0] == 1
    with pytest.raises(KeyError, match="embeds \\['expression', 'report'\\]"):
        model.preprocess["ct"]


def test_a_model_without_a_text_modality_says_so():
    model = medclip.create_model({"ecg": {"width": 16}})
    with pytest.raises(ValueError, match="exactly one text modality; this model has none"):
        _ = model.tokenizer


def test_logit_scale_is_a_plain_property(model, recwarn):
    assert isinstance(type(model).__dict__["logit_scale"], property)  # read, never called
    assert 1.0 <= float(model.logit_scale) <= 100.0 and not model.logit_scale.requires_grad
    assert not [warning for warning in recwarn if "requires_grad" in str(warning.message)]  # no .detach() needed
    with torch.no_grad():
        batch = model.tokenizer(["a B lymphocyte."])
    outputs = model({"report": batch["report"], "report_mask": batch["report_mask"]})
    assert outputs["logit_scale"].requires_grad  # training still learns the temperature
    torch.testing.assert_close(outputs["logit_scale"].detach(), model.logit_scale)


def test_retrieval_index_of_the_held_out_cells(model, pbmc_manifest):
    index = medclip.retrieval_index(model, pbmc_manifest, "expression", split="test")
    assert isinstance(index, EmbeddingIndex) and len(index) >= 20
    assert index.metadata["modality"] == "expression" and index.metadata["split"] == "test"
    query = embed(model, "report", ["a B lymphocyte."])
    scores, positions = index.search(query, k=5)
    assert scores.shape == (1, 5) and np.all(np.diff(scores[0]) <= 1e-6)
    assert all(study.startswith("s-") for study in index.studies)  # pseudonyms, never a manifest value
