"""Every ```python block of docs/api.md runs, in order and in one namespace, against a small trained checkpoint laid
out as `medclip quickstart --out quickstart_out` writes it: the documented API is the API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def test_the_page_has_examples_to_run():
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 8
    joined = "\n".join(blocks)
    for call in ("medclip.load_model", "model.tokenizer", "model.encode", "model.preprocess[", "zero_shot_classifier",
                 "predict_proba", "retrieval_index", "export_tower", "write_model_card"):  # fmt: skip
        assert call in joined, call


@pytest.mark.slow
def test_every_example_runs(tiny_checkpoint, pbmc_manifest, tmp_path, monkeypatch, capsys):
    quickstart_out = tmp_path / "quickstart_out"
    quickstart_out.mkdir()
    (quickstart_out / "checkpoint").symlink_to(tiny_checkpoint, target_is_directory=True)
    (quickstart_out / "data").symlink_to(pbmc_manifest.parent, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(python_blocks(DOC.read_text()), start=1):
        try:
            exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)
        except Exception as error:  # name the block that failed
            raise AssertionError(f"docs/api.md python block {number} failed: {error!r}\n{block}") from error
    printed = capsys.readouterr().out
    assert "['expression', 'report']" in printed and "library_name: medclip" in printed
    assert (tmp_path / "served" / "report.json").is_file() and (quickstart_out / "index" / "index.json").is_file()
