"""The input-safety helpers every reader uses: regular files only, bounded reads, decoded sizes before decoding."""

from __future__ import annotations

import os
import threading

import pytest

from medclip.data.safe_io import (
    NOT_REGULAR_FILE,
    TOO_LARGE,
    check_decoded_size,
    read_limited,
    regular_files,
    require_regular_file,
)
from medclip.types import ModalityError


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "smith_john.dcm"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            read_limited(fifo, 1024)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            outcome.append(error)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], ModalityError) and outcome[0].reason == NOT_REGULAR_FILE
    assert "smith" not in str(outcome[0])  # the file's name is never quoted


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_device_files_are_refused(device):
    with pytest.raises(ModalityError) as caught:
        require_regular_file(device)
    assert caught.value.reason == NOT_REGULAR_FILE


def test_read_limited_refuses_files_over_the_limit(tmp_path):
    path = tmp_path / "report.txt"
    path.write_bytes(b"x" * 100)
    assert read_limited(path, 100) == b"x" * 100
    with pytest.raises(ModalityError) as caught:
        read_limited(path, 99)
    assert caught.value.reason == TOO_LARGE


def test_regular_files_skip_folders_and_refuse_special_entries(tmp_path):
    (tmp_path / "a.dcm").write_bytes(b"1")
    (tmp_path / "sub").mkdir()
    assert [path.name for path in regular_files(sorted(tmp_path.iterdir()))] == ["a.dcm"]
    os.mkfifo(tmp_path / "b.dcm")
    with pytest.raises(ModalityError) as caught:
        list(regular_files(sorted(tmp_path.iterdir())))
    assert caught.value.reason == NOT_REGULAR_FILE


def test_decoded_size_is_checked_with_exact_integers():
    assert check_decoded_size((10, 10), 2, budget_mb=1) == 200
    with pytest.raises(ModalityError) as caught:  # 50k x 50k x 3 bytes: 7 GB, from a header alone
        check_decoded_size((50_000, 50_000, 3), 1, budget_mb=2048)
    assert caught.value.reason == TOO_LARGE
    with pytest.raises(ModalityError):  # absurd header dimensions do not overflow into a small number
        check_decoded_size((2**40, 2**40, 2**40), 8, budget_mb=2048)
    with pytest.raises(ModalityError) as caught:
        check_decoded_size((-1, 5), 1, budget_mb=1)
    assert caught.value.reason == "bad_header"
