"""Safe loading: a malicious pickle never runs, foreign weights only through torch.load(weights_only=True),
HDF5 external links refused, and no unsafe loader call anywhere in the library code."""

from __future__ import annotations

import ast
import pathlib
import pickle
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from medclip.checkpoint import CheckpointError, check_checkpoint_path
from medclip.cli import main as cli_main
from medclip.types import ModalityError
from medclip.weights import convert_weights, import_torch_weights
from tests.paths import REPOSITORY

ROOT = REPOSITORY


class Payload:
    """Unpickling this object calls ``Path.touch(marker)``: a stand-in for any code an attacker could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def malicious_files(directory: Path, marker: Path) -> dict[str, Path]:
    """The payload in every container a user might hand in: torch.save zip, raw pickle, disguised names."""
    files = {}
    torch.save({"weight": torch.ones(2), "evil": Payload(marker)}, directory / "model.pt")
    files["torch.save .pt"] = directory / "model.pt"
    raw = pickle.dumps({"weight": [1.0, 2.0], "evil": Payload(marker)}, protocol=2)
    for name in ("weights.pkl", "pytorch_model.bin", "last.ckpt", "weights.data"):  # the last: unknown suffix
        (directory / name).write_bytes(raw)
        files[name] = directory / name
    return files


@pytest.fixture
def planted(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    files = malicious_files(tmp_path, marker)
    # the payload is live: calling what __reduce__ names (without unpickling) does create a marker
    function, arguments = Payload(tmp_path / "control").__reduce__()
    function(*arguments)
    assert (tmp_path / "control").exists()
    return marker, files


def test_malicious_pickle_refused_without_trust_pickle(planted):
    marker, files = planted
    for name, path in files.items():
        with pytest.raises(CheckpointError, match="--trust-pickle") as error:
            import_torch_weights(path)
        assert "pickle" in str(error.value), name
    assert not marker.exists()


def test_malicious_pickle_rejected_by_weights_only_even_when_trusted(planted):
    marker, files = planted
    for name, path in files.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickle protocol of the raw files
            with pytest.raises(CheckpointError, match=r"weights_only=True") as error:
                import_torch_weights(path, trust_pickle=True)
        assert "weights_only=False" not in str(error.value), name  # never advise the unsafe path
    assert not marker.exists()


def test_pickle_disguised_as_safetensors_is_not_unpickled(planted, tmp_path):
    marker, files = planted
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(files["torch.save .pt"].read_bytes())
    with pytest.raises(CheckpointError, match="safetensors"):
        import_torch_weights(disguised, trust_pickle=True)
    assert not marker.exists()


def test_load_model_refuses_pickle_checkpoints(planted):
    marker, files = planted
    with pytest.raises(CheckpointError, match="never unpickles"):
        check_checkpoint_path(files["torch.save .pt"])
    assert not marker.exists()


def test_trusted_plain_weights_convert_to_safetensors(tmp_path):
    weights = {"encoder.weight": torch.randn(3, 4), "encoder.bias": torch.randn(3), "head": {"scale": torch.ones(1)}}
    torch.save({"state_dict": weights, "epoch": 7}, tmp_path / "release.pt")  # a typical release wrapper
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        convert_weights(tmp_path / "release.pt", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    path = convert_weights(tmp_path / "release.pt", tmp_path / "out.safetensors", trust_pickle=True)
    loaded = load_file(str(path))
    assert sorted(loaded) == ["encoder.bias", "encoder.weight", "head.scale"]
    assert torch.equal(loaded["encoder.weight"], weights["encoder.weight"])
    # safetensors input needs no trust at all
    save_file({"a": torch.arange(4.0)}, str(tmp_path / "plain.safetensors"))
    assert torch.equal(import_torch_weights(tmp_path / "plain.safetensors")["a"], torch.arange(4.0))
    # non-tensor content is refused even when it is harmless
    torch.save({"weight": torch.ones(1), "note": "trained on site A"}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="only tensors"):
        import_torch_weights(tmp_path / "mixed.pt", trust_pickle=True)


def test_cli_convert_weights(planted, tmp_path, capsys):
    marker, files = planted
    out = tmp_path / "converted.safetensors"
    assert cli_main(["convert-weights", str(files["torch.save .pt"]), str(out)]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert cli_main(["convert-weights", str(files["torch.save .pt"]), str(out), "--trust-pickle"]) == 2
    assert "weights_only=True" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()
    torch.save({"w": torch.full((2, 2), 3.0)}, tmp_path / "good.pth")
    assert cli_main(["convert-weights", str(tmp_path / "good.pth"), str(out), "--trust-pickle"]) == 0
    assert torch.equal(load_file(str(out))["w"], torch.full((2, 2), 3.0))


# --- HDF5 external links through the expression plugin ---------------------------------------------------------------
def test_h5ad_whose_matrix_is_an_external_link_is_refused(tmp_path):
    from modalities.expression import ExpressionModality

    genes = [f"GENE{index}" for index in range(6)]
    path = tmp_path / "cells.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = pd.DataFrame(index=[f"CELL-{index}" for index in range(3)])
        ad.AnnData(X=np.ones((3, 6), np.float32), obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)
    with h5py.File(tmp_path / "elsewhere.h5", "w") as other:
        other["X"] = np.full((3, 6), 7.0, np.float32)
    with h5py.File(path, "a") as handle:
        del handle["X"]
        handle["X"] = h5py.ExternalLink("elsewhere.h5", "/X")  # reading X would silently read another file
    with pytest.raises(ModalityError) as error:
        ExpressionModality().load(f"{path}#row=0")
    assert error.value.reason == "external_link"
    assert str(tmp_path) not in str(error.value) and "CELL-" not in str(error.value)


# --- no unsafe loader anywhere in the library ------------------------------------------------------------------------
def _unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        name = f"{owner}.{node.func.attr}"
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}

        def constant(key: str, keywords=keywords):
            value = keywords.get(key)
            return value.value if isinstance(value, ast.Constant) else None

        if name == "torch.load" and constant("weights_only") is not True:
            found.append((node.lineno, "torch.load without weights_only=True"))
        if name in {"pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "dill.loads", "joblib.load"}:
            found.append((node.lineno, name))
        if name in {"pd.read_pickle", "pandas.read_pickle"}:
            found.append((node.lineno, name))
        if name in {"np.load", "numpy.load"} and constant("allow_pickle") is True:
            found.append((node.lineno, "np.load(allow_pickle=True)"))
    return found


def test_library_code_never_unpickles():
    offenders = {}
    for package in ("medclip", "modalities", "recipes"):
        for path in sorted((ROOT / package).rglob("*.py")):
            calls = _unsafe_calls(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
            if calls:
                offenders[str(path.relative_to(ROOT))] = calls
    assert offenders == {}
    # the checker itself catches what it should
    sample = "import torch, pickle\ntorch.load('x')\ntorch.load('x', weights_only=False)\npickle.loads(b'')\n"
    assert len(_unsafe_calls(ast.parse(sample))) == 3
