"""User-facing failures end with one line naming the reason, never a traceback (issue 14, "Messages")."""

from __future__ import annotations

import pytest

from medclip.cli import main
from medclip.config import parse_override


def test_override_values_with_a_colon_stay_text():
    assert parse_override("query_text=Mass: left upper lobe") == (["query_text"], "Mass: left upper lobe")
    assert parse_override("query_text=- a dash first") == (["query_text"], "- a dash first")
    assert parse_override("ks=[1, 5]") == (["ks"], [1, 5])
    assert parse_override("loss={clip: 1.0}") == (["loss"], {"clip": 1.0})
    assert parse_override("train.lr=3e-4") == (["train", "lr"], 3e-4)


def test_a_corrupt_checkpoint_is_one_line(small_experiment, tmp_path, capsys):
    from recipes.pretrain import pretrain

    result = pretrain(small_experiment("train.steps=1", out=tmp_path / "run"))
    (result.checkpoint / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    code = main(["embed", "--config", "recipes/configs/embed.yaml", f"checkpoint={result.checkpoint}",
                 f"out={tmp_path / 'embed'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "not a readable safetensors file" in err


def test_seen_patients_is_one_line_with_its_reason(small_experiment, pbmc_manifest, tmp_path, capsys):
    from recipes.pretrain import pretrain

    result = pretrain(small_experiment("train.steps=1", out=tmp_path / "run"))
    code = main(["probe", f"checkpoint={result.checkpoint}", f"manifest={pbmc_manifest}", "split=train",
                 "train_split=val", "threshold_split=test", f"out={tmp_path / 'probe'}", "progress=false"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "[seen_patients]" in err and err.count("\n") == 1


@pytest.mark.parametrize("bad", ["embed checkpoint=/nonexistent/ckpt", "pretrain data.manifest=/nonexistent.csv"])
def test_missing_inputs_are_one_line(bad, capsys, tmp_path):
    command, override = bad.split(" ")
    assert main([command, override, f"out={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("medclip: error:")
