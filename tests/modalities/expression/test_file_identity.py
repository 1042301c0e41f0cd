"""Open ``.h5ad`` files are cached by path and identity: a file replaced or rewritten under the same name is read
again, never through the handle to the old file (issue 14)."""

from __future__ import annotations

import os
import shutil

import numpy as np

from modalities.expression import ExpressionModality
from tests.modalities.expression.writers import counts, write_h5ad


def test_file_replaced_under_the_same_name_is_read_again(tmp_path):
    modality = ExpressionModality()
    path = write_h5ad(tmp_path / "cells.h5ad", counts(3, seed=1))
    first = modality.load(f"{path}#row=0")["expression"]
    write_h5ad(tmp_path / "new.h5ad", counts(3, seed=2))
    os.replace(tmp_path / "new.h5ad", path)  # another file under the same name
    second = modality.load(f"{path}#row=0")["expression"]
    assert not np.array_equal(first, second)
    expected = np.log1p(counts(3, seed=2)[0] / counts(3, seed=2)[0].sum() * 1e4)
    np.testing.assert_allclose(second, expected, rtol=1e-5)


def test_file_rewritten_in_place_with_its_mtime_restored_is_read_again(tmp_path):
    modality = ExpressionModality()
    path = write_h5ad(tmp_path / "cells.h5ad", counts(3, seed=1))
    first = modality.load(f"{path}#row=1")["expression"]
    before = os.stat(path)
    # Another process rewrites the file in place (this one holds it open, so HDF5 would refuse to truncate it here).
    shutil.copyfile(write_h5ad(tmp_path / "new.h5ad", counts(3, seed=3)), path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_ino == before.st_ino
    second = modality.load(f"{path}#row=1")["expression"]
    expected = np.log1p(counts(3, seed=3)[1] / counts(3, seed=3)[1].sum() * 1e4)
    np.testing.assert_allclose(second, expected, rtol=1e-5)
    assert not np.array_equal(first, second)
