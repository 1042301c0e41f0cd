"""Tests of the expression modality on real .h5ad files written by anndata (scanpy's pbmc68k_reduced and small
in-test AnnData objects), read back through the plugin."""

from __future__ import annotations

import json
import logging
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
import torch

import medclip
from medclip.config import ConfigError
from medclip.registry import RegistryError
from medclip.types import ModalityError
from modalities.expression import (
    EXPRESSION_ENCODERS,
    ExpressionConfig,
    ExpressionModality,
    expression_refs,
    gene_list,
    reader,
    storage,
)

GENES = [f"GENE{index}" for index in range(12)]


def write_h5ad(path, matrix, genes, obs_names=None, **kwargs):
    """Write a real .h5ad with anndata; obs names default to barcode-like strings."""
    n_obs = matrix.shape[0]
    obs = pd.DataFrame(index=obs_names or [f"BARCODE-{index:04d}" for index in range(n_obs)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about non-unique names, which some tests write on purpose
        adata = ad.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=list(genes)), **kwargs)
        adata.write_h5ad(path)
    return path


def counts_matrix(n_obs, n_genes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.negative_binomial(2, 0.3, size=(n_obs, n_genes)).astype(np.float32) + np.eye(n_obs, n_genes)


def fitted(samples, **config):
    modality = ExpressionModality(ExpressionConfig(**config))
    modality.fit(samples)
    return modality


@pytest.fixture(scope="module")
def pbmc_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("pbmc") / "pbmc68k_reduced.h5ad"
    sc.datasets.pbmc68k_reduced().write_h5ad(path)
    return path


# --- registration and config -----------------------------------------------------------------------------------------
def test_registered_through_entry_point_and_config_checked():
    assert "expression" in medclip.list_modalities()
    modality = medclip.get_modality("expression", {"encoder": "gene_transformer", "top_genes": 8})
    assert isinstance(modality, ExpressionModality) and modality.config.top_genes == 8
    with pytest.raises(ConfigError, match="normalization"):
        medclip.get_modality("expression", {"normalization": "zscore"})
    with pytest.raises(ConfigError, match="max_gene"):
        medclip.get_modality("expression", {"max_gene": 10})


# --- normalisation detection -----------------------------------------------------------------------------------------
def test_counts_are_detected_and_match_scanpy(tmp_path):
    counts = counts_matrix(6, len(GENES))
    path = write_h5ad(tmp_path / "counts.h5ad", sp.csr_matrix(counts), GENES)
    expected = ad.AnnData(X=counts.copy())
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    modality = ExpressionModality()
    for row in range(6):
        sample = modality.load(f"{path}#row={row}")
        assert sample["expression"].dtype == np.float32 and sample["expression"].shape == (len(GENES),)
        np.testing.assert_allclose(sample["expression"], expected.X[row], rtol=1e-5, atol=1e-6)
        assert sample["expression_meta"]["normalization"] == "counts"
        assert sample["expression_meta"]["space"] == "log1p"
        assert sample["expression_meta"]["n_genes"] == len(GENES)
    assert gene_list(sample["expression_meta"]["genes_key"]) == tuple(GENES)
    assert set(sample["expression_meta"]) == {"genes_key", "normalization", "space", "n_genes"}


def test_log_normalised_values_are_used_as_is(tmp_path):
    values = np.log1p(counts_matrix(4, len(GENES)) * 3.7).astype(np.float32)  # non-integer, non-negative
    path = write_h5ad(tmp_path / "log.h5ad", values, GENES)
    sample = ExpressionModality().load({"path": path, "row": 2})
    assert sample["expression_meta"]["normalization"] == "log1p"
    np.testing.assert_array_equal(sample["expression"], values[2])


def test_scaled_x_falls_back_to_raw_and_can_be_forced(pbmc_path, tmp_path):
    reference = ad.read_h5ad(pbmc_path)
    auto = ExpressionModality().load(f"{pbmc_path}#row=5")
    assert auto["expression_meta"]["normalization"] == "log1p"  # .raw holds log-normalised values
    np.testing.assert_allclose(auto["expression"], reference.raw.X[5].toarray().ravel())
    scaled = ExpressionModality(ExpressionConfig(layer="X")).load(f"{pbmc_path}#row=5")
    assert scaled["expression_meta"]["normalization"] == "scaled" and scaled["expression_meta"]["space"] == "scaled"
    assert (scaled["expression"] < 0).any()
    np.testing.assert_allclose(scaled["expression"], reference.X[5])
    with pytest.raises(ModalityError) as error:
        ExpressionModality(ExpressionConfig(layer="X", normalization="counts")).load(f"{pbmc_path}#row=5")
    assert error.value.reason == "normalization_mismatch"
    # Without .raw, scaled X is used as scaled data.
    no_raw = write_h5ad(tmp_path / "scaled.h5ad", reference.X[:3].copy(), reference.var_names)
    assert ExpressionModality().load(f"{no_raw}#row=0")["expression_meta"]["normalization"] == "scaled"


def test_named_layer_and_missing_layer(tmp_path):
    counts = counts_matrix(3, len(GENES))
    logged = np.log1p(counts).astype(np.float32)
    path = write_h5ad(tmp_path / "layers.h5ad", logged, GENES, layers={"counts": sp.csr_matrix(counts)})
    sample = ExpressionModality(ExpressionConfig(layer="counts")).load(f"{path}#row=1")
    assert sample["expression_meta"]["normalization"] == "counts"
    np.testing.assert_allclose(sample["expression"], np.log1p(counts[1] / counts[1].sum() * 1e4), rtol=1e-5)
    with pytest.raises(ModalityError) as error:
        ExpressionModality(ExpressionConfig(layer="spliced")).load(f"{path}#row=1")
    assert error.value.reason == "missing_layer"


@pytest.mark.parametrize("storage_kind", ["dense", "csr", "csc"])
def test_large_files_are_read_row_by_row_from_disk(tmp_path, monkeypatch, storage_kind):
    counts = counts_matrix(5, len(GENES))
    stored = {"dense": counts, "csr": sp.csr_matrix(counts), "csc": sp.csc_matrix(counts)}[storage_kind]
    in_memory = write_h5ad(tmp_path / "small.h5ad", stored, GENES)
    expected = [ExpressionModality().load(f"{in_memory}#row={row}")["expression"] for row in range(5)]
    monkeypatch.setattr(reader, "FULL_READ_BYTES", 0)  # every matrix counts as large
    on_disk = write_h5ad(tmp_path / "large.h5ad", stored, GENES)
    for row in range(5):
        np.testing.assert_array_equal(ExpressionModality().load(f"{on_disk}#row={row}")["expression"], expected[row])
    opened = reader.open_h5ad(on_disk).matrix("X")._opened()
    # Dense and CSR rows come from disk one by one; a CSC row touches every column, so CSC is read once (in budget).
    expected_source = {"dense": storage.DenseRows, "csr": storage.CsrRows, "csc": storage.InMemoryRows}[storage_kind]
    assert isinstance(opened, expected_source)


class CellDataset(torch.utils.data.Dataset):
    def __init__(self, modality, refs, transform):
        self.modality, self.refs, self.transform = modality, refs, transform

    def __len__(self):
        return len(self.refs)

    def __getitem__(self, index):
        return self.transform(self.modality.load(self.refs[index]))


def test_dataloader_workers_reopen_files_after_fork(tmp_path):
    counts = counts_matrix(8, len(GENES))
    path = write_h5ad(tmp_path / "cells.h5ad", sp.csr_matrix(counts), GENES)
    modality = ExpressionModality()
    refs = expression_refs(path)
    modality.fit([modality.load(ref) for ref in refs])  # the parent has the file open
    transform = modality.transforms(train=False)
    loader = torch.utils.data.DataLoader(
        CellDataset(modality, refs, transform),
        batch_size=4,
        num_workers=2,
        collate_fn=modality.collate,
        multiprocessing_context="fork",
    )
    batches = list(loader)
    expected = modality.collate([transform(modality.load(ref)) for ref in refs])
    torch.testing.assert_close(torch.cat([batch["expression"] for batch in batches]), expected["expression"])


# --- references ------------------------------------------------------------------------------------------------------
def test_load_by_obs_name_row_mapping_and_single_observation(tmp_path):
    counts = counts_matrix(5, len(GENES))
    names = [f"PATIENT-{index}#A" for index in range(5)]  # obs names may contain '#'
    path = write_h5ad(tmp_path / "cells.h5ad", counts, GENES, obs_names=names)
    modality = ExpressionModality()
    ref = modality.resolve("cells.h5ad#PATIENT-3#A", tmp_path)
    assert ref == {"path": str(tmp_path / "cells.h5ad"), "obs": "PATIENT-3#A"}
    by_name = modality.load(ref)
    by_row = modality.load(modality.resolve("cells.h5ad#row=3", tmp_path))
    by_mapping = modality.load({"path": path, "row": 3})
    np.testing.assert_array_equal(by_name["expression"], by_row["expression"])
    np.testing.assert_array_equal(by_name["expression"], by_mapping["expression"])
    assert expression_refs(path) == [f"{path}#row={index}" for index in range(5)]
    single = write_h5ad(tmp_path / "spot.h5ad", counts[:1], GENES)
    np.testing.assert_array_equal(modality.load(single)["expression"], modality.load(f"{path}#row=0")["expression"])
    for bad, reason in [
        (f"{path}#PATIENT-9#A", "missing_observation"),
        (f"{path}#row=5", "missing_observation"),
        (str(path), "missing_observation"),  # several observations and none named
        (f"{path}#", "bad_reference"),
        ({"path": path, "row": 1, "obs": "x"}, "bad_reference"),
    ]:
        with pytest.raises(ModalityError) as error:
            modality.load(bad)
        assert error.value.reason == reason
        assert "PATIENT" not in str(error.value) and str(tmp_path) not in str(error.value)


# --- reason-coded errors -------------------------------------------------------------------------------------------
def test_bad_files_raise_reason_codes_without_identifiers(tmp_path):
    counts = counts_matrix(3, len(GENES))
    modality = ExpressionModality()
    cases = {}
    cases["missing_file"] = f"{tmp_path / 'absent.h5ad'}#row=0"
    (tmp_path / "text.h5ad").write_text("not hdf5")
    cases["unreadable"] = f"{tmp_path / 'text.h5ad'}#row=0"
    duplicated = [*GENES[:-1], GENES[0]]
    cases["duplicate_genes"] = f"{write_h5ad(tmp_path / 'dup.h5ad', counts, duplicated)}#row=0"
    with_nan = counts.copy()
    with_nan[1, 4] = np.nan
    cases["non_finite"] = f"{write_h5ad(tmp_path / 'nan.h5ad', with_nan, GENES)}#row=1"
    empty = counts.copy()
    empty[2] = 0
    cases["empty_observation"] = f"{write_h5ad(tmp_path / 'empty.h5ad', empty, GENES)}#row=2"
    linked = write_h5ad(tmp_path / "linked.h5ad", counts, GENES)
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["data"] = np.zeros(3)
    with h5py.File(linked, "a") as handle:
        handle["uns/elsewhere"] = h5py.ExternalLink("other.h5", "/data")
    cases["external_link"] = f"{linked}#row=0"
    virtual = write_h5ad(tmp_path / "virtual.h5ad", counts, GENES)
    with h5py.File(virtual, "a") as handle:
        layout = h5py.VirtualLayout(shape=(3,), dtype=np.float64)
        layout[:] = h5py.VirtualSource("other.h5", "data", shape=(3,))
        handle["uns"].create_virtual_dataset("elsewhere", layout)
    cases["virtual_dataset"] = f"{virtual}#row=0"
    for case, ref in cases.items():
        reason = "external_link" if case == "virtual_dataset" else case
        with pytest.raises(ModalityError) as error:
            modality.load(ref)
        assert error.value.reason == reason, (case, str(error.value))
        assert str(tmp_path) not in str(error.value) and "BARCODE" not in str(error.value)
    # the rows of the NaN file without NaN load fine: the check is per observation
    assert np.isfinite(modality.load(f"{tmp_path / 'nan.h5ad'}#row=0")["expression"]).all()


# --- vocabulary and alignment --------------------------------------------------------------------------------------
def test_alignment_by_gene_name_with_permuted_partial_and_extra_genes(tmp_path, caplog):
    rng = np.random.default_rng(1)
    train_values = rng.uniform(0.1, 3.0, size=(4, len(GENES))).astype(np.float32)  # log-like: passed through as is
    train = write_h5ad(tmp_path / "train.h5ad", train_values, GENES)
    modality = ExpressionModality()
    modality.fit([modality.load(ref) for ref in expression_refs(train)])
    assert modality.vocabulary.genes == tuple(GENES)
    # Another file: 8 of the 12 genes in a shuffled order, plus 3 genes the vocabulary does not know.
    other_genes = [GENES[index] for index in rng.permutation(len(GENES))[:8]] + ["NEW1", "NEW2", "NEW3"]
    other_values = rng.uniform(0.1, 3.0, size=(2, len(other_genes))).astype(np.float32)
    other = write_h5ad(tmp_path / "other.h5ad", other_values, other_genes)
    transform = modality.transforms(train=False)
    with caplog.at_level(logging.INFO, logger="modalities.expression"):
        aligned = [transform(modality.load(ref)) for ref in expression_refs(other)]
    for row, sample in enumerate(aligned):
        vector = sample["expression"]
        assert isinstance(vector, torch.Tensor) and vector.shape == (len(GENES),) and vector.dtype == torch.float32
        for source, gene in enumerate(other_genes[:8]):
            assert vector[GENES.index(gene)].item() == pytest.approx(other_values[row, source])
        absent = [GENES.index(gene) for gene in GENES if gene not in other_genes]
        assert torch.all(vector[absent] == 0)
    report = modality.alignment_report()[aligned[0]["expression_meta"]["genes_key"]]
    assert report == {"source_genes": 11, "matched": 8, "missing": 4, "unknown": 3}
    messages = [record.getMessage() for record in caplog.records if "4 missing" in record.getMessage()]
    assert len(messages) == 1 and "3 unknown" in messages[0]  # once per gene list, counts only
    assert "other.h5ad" not in messages[0]
    unrelated = write_h5ad(tmp_path / "unrelated.h5ad", other_values[:, :3], ["X1", "X2", "X3"])
    with pytest.raises(ModalityError) as error:
        transform(modality.load(f"{unrelated}#row=0"))
    assert error.value.reason == "no_shared_genes"


def test_max_genes_keeps_the_most_variable_genes():
    samples = ExpressionModality().synthetic(60, seed=3)
    values = np.stack([sample["expression"] for sample in samples])
    modality = fitted(samples, max_genes=15)
    expected = np.sort(np.argsort(-values.var(axis=0), kind="stable")[:15])
    genes = gene_list(samples[0]["expression_meta"]["genes_key"])
    assert modality.vocabulary.genes == tuple(genes[index] for index in expected)
    transformed = modality.transforms(train=False)(samples[0])
    assert transformed["expression"].shape == (15,)
    np.testing.assert_allclose(transformed["expression"].numpy(), values[0, expected])


def test_value_spaces_must_agree(pbmc_path):
    log_cells = [ExpressionModality().load(f"{pbmc_path}#row={row}") for row in range(3)]
    scaled_loader = ExpressionModality(ExpressionConfig(layer="X"))
    scaled_cells = [scaled_loader.load(f"{pbmc_path}#row={row}") for row in range(3)]
    with pytest.raises(ModalityError) as error:
        fitted(log_cells + scaled_cells)
    assert error.value.reason == "mixed_normalization"
    modality = fitted(log_cells)
    with pytest.raises(ModalityError) as error:
        modality.transforms(train=False)(scaled_cells[0])
    assert error.value.reason == "normalization_mismatch"


def test_gene_dropout_only_when_training():
    samples = ExpressionModality().synthetic(4, seed=0)
    modality = fitted(samples, gene_dropout=0.5)
    torch.manual_seed(0)
    train_vector = modality.transforms(train=True)(samples[0])["expression"]
    eval_vector = modality.transforms(train=False)(samples[0])["expression"]
    np.testing.assert_allclose(eval_vector.numpy(), samples[0]["expression"])
    kept = (train_vector != 0).sum().item() / (eval_vector != 0).sum().item()
    assert 0.3 < kept < 0.7
    assert torch.all((train_vector == 0) | (train_vector == eval_vector))


# --- state -----------------------------------------------------------------------------------------------------------
def test_preprocess_state_json_round_trip():
    samples = ExpressionModality().synthetic(8, seed=1)
    fresh = ExpressionModality()
    with pytest.raises(RuntimeError, match="fit"):
        fresh.transforms(train=False)
    with pytest.raises(RuntimeError, match="fit"):
        fresh.build_encoder()
    modality = fitted(samples, max_genes=50)
    state = json.loads(json.dumps(modality.preprocess_state()))
    assert len(state["vocabulary"]) == 50 and state["normalization"]["space"] == "log1p"
    assert state["normalization"]["source_kinds"] == {"counts": 8}
    restored = ExpressionModality(ExpressionConfig(max_genes=50))
    restored.load_preprocess_state(state)
    assert restored.vocabulary.genes == modality.vocabulary.genes
    expected = modality.transforms(train=False)(samples[2])["expression"]
    torch.testing.assert_close(restored.transforms(train=False)(samples[2])["expression"], expected)
    encoder = modality.build_encoder()
    restored.build_encoder().load_state_dict(encoder.state_dict())
    state["vocabulary"][0] = "TAMPERED"
    with pytest.raises(ValueError, match="fingerprint"):
        ExpressionModality().load_preprocess_state(state)


# --- collate and encoders ------------------------------------------------------------------------------------------
def test_collate_masks_missing_and_refuses_unaligned():
    samples = ExpressionModality().synthetic(3, seed=2)
    modality = fitted(samples)
    transform = modality.transforms(train=False)
    batch = modality.collate([transform(samples[0]), transform({"patient_id": "p1"}), transform(samples[1])])
    assert batch["expression"].shape == (3, len(modality.vocabulary)) and batch["expression"].dtype == torch.float32
    assert batch["expression_mask"].tolist() == [True, False, True]
    assert torch.all(batch["expression"][1] == 0)
    with pytest.raises(ValueError, match="aligned"):
        modality.collate([transform(samples[0]), {"expression": np.zeros(5, np.float32)}])


@pytest.mark.parametrize("encoder", EXPRESSION_ENCODERS.names())
def test_encoders_shapes_masks_and_gradients(encoder):
    samples = ExpressionModality().synthetic(6, seed=4)
    modality = fitted(samples, encoder=encoder, width=32, heads=4, layers=2, top_genes=16)
    transform = modality.transforms(train=True)
    batch = modality.collate([transform(sample) for sample in samples])
    values = batch["expression"].clone()
    values[0] = 0
    values[0, :3] = torch.tensor([1.0, 2.0, 3.0])  # a cell expressing fewer genes than top_genes
    module = modality.build_encoder()
    assert module.output_dim == 32
    output = module(values)
    assert output.pooled.shape == (6, 32) and output.tokens.shape == (6, 16, 32)
    assert output.token_mask.dtype == torch.bool and output.token_mask.shape == (6, 16)
    assert output.token_mask[0].sum().item() == 3 and output.token_mask[1:].all()
    assert torch.isfinite(output.pooled).all() and torch.isfinite(output.tokens).all()
    (output.pooled.square().mean() + output.tokens[output.token_mask].square().mean()).backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert any(parameter.grad.abs().sum() > 0 for parameter in module.parameters())
    module.eval()
    with torch.no_grad():
        assert torch.isfinite(module(values).pooled).all()
    with pytest.raises(RegistryError, match="gene_transformer"):
        fitted(samples, encoder="gene_transfomer").build_encoder()


def test_synthetic_samples_are_load_shaped_and_reproducible():
    modality = ExpressionModality()
    first, again = modality.synthetic(5, seed=7), modality.synthetic(5, seed=7)
    for sample, twin in zip(first, again, strict=True):
        np.testing.assert_array_equal(sample["expression"], twin["expression"])
        assert sample["expression"].dtype == np.float32 and (sample["expression"] >= 0).all()
        meta = sample["expression_meta"]
        assert meta["normalization"] == "counts" and meta["n_genes"] == len(gene_list(meta["genes_key"]))
        assert np.expm1(sample["expression"].astype(np.float64)).sum() == pytest.approx(1e4, rel=1e-4)
    assert not np.array_equal(first[0]["expression"], modality.synthetic(5, seed=8)[0]["expression"])


# --- the real pbmc68k_reduced file, end to end ---------------------------------------------------------------------
@pytest.mark.parametrize("encoder", ["mlp", "gene_transformer"])
def test_pbmc68k_reduced_end_to_end(pbmc_path, encoder, monkeypatch):
    modality = ExpressionModality(ExpressionConfig(encoder=encoder, width=32, layers=1, top_genes=32))
    monkeypatch.chdir(pbmc_path.parent)  # manifest cells are relative to the manifest's folder
    refs = [modality.resolve(ref, pbmc_path.parent) for ref in expression_refs(pbmc_path.name)]
    samples = [modality.load(ref) for ref in refs]
    assert len(samples) == 700
    modality.fit(samples)
    assert len(modality.vocabulary) == 765 and modality.space == "log1p"
    transform = modality.transforms(train=True)
    batch = modality.collate([transform(sample) for sample in samples[:64]])
    assert batch["expression"].shape == (64, 765) and batch["expression_mask"].all()
    output = modality.build_encoder()(batch["expression"])
    assert output.pooled.shape == (64, 32) and output.tokens.shape == (64, 32, 32)
    assert torch.isfinite(output.pooled).all() and output.token_mask.any(dim=1).all()
