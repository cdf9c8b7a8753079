import os
from pathlib import Path

import pytest

from vision_core.storage.atomic import copy_atomic, write_atomic, write_dir_atomic


def test_write_creates_the_folder_and_leaves_only_the_file(tmp_path):
    path = write_atomic(tmp_path / "sub" / "model.tflite", b"abc")
    assert path.read_bytes() == b"abc"
    assert [p.name for p in path.parent.iterdir()] == ["model.tflite"]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = write_atomic(tmp_path / "metrics.json", b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_copy_writes_the_same_bytes_under_the_new_name_only(tmp_path):
    source = write_atomic(tmp_path / "qat" / "qat_int8.tflite", b"\x00int8")
    path = copy_atomic(source, tmp_path / "exports" / "model_int8_qat.tflite")
    assert path.read_bytes() == b"\x00int8"
    assert [p.name for p in path.parent.iterdir()] == ["model_int8_qat.tflite"]


def fill(files: dict[str, bytes]):
    def write(folder):
        for name, data in files.items():
            (folder / name).write_bytes(data)

    return write


def test_a_folder_write_replaces_the_old_folder_whole(tmp_path):
    target = write_dir_atomic(tmp_path / "saved_model", fill({"saved_model.pb": b"old", "stale.txt": b"x"}))
    assert write_dir_atomic(target, fill({"saved_model.pb": b"new"})) == target
    assert {p.name: p.read_bytes() for p in target.iterdir()} == {"saved_model.pb": b"new"}
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model"]


def test_a_failed_folder_write_keeps_the_old_folder_and_no_staging(tmp_path):
    target = write_dir_atomic(tmp_path / "saved_model", fill({"saved_model.pb": b"old"}))

    def half_then_fail(folder):
        (folder / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_dir_atomic(target, half_then_fail)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == {"saved_model.pb": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model"]
    with pytest.raises(OSError, match="disk full"):
        write_dir_atomic(tmp_path / "new_model", half_then_fail)
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = write_dir_atomic(tmp_path / "saved_model", fill({"saved_model.pb": b"old"}))
    rename = os.rename

    def refuse_the_staging_folder(source, destination):
        if (
            Path(source).name.startswith(".saved_model.")
            and ".old." not in Path(source).name
            and Path(destination) == target
        ):
            raise OSError("rename refused")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", refuse_the_staging_folder)
    with pytest.raises(OSError, match="rename refused"):
        write_dir_atomic(target, fill({"saved_model.pb": b"new"}))
    assert {p.name: p.read_bytes() for p in target.iterdir()} == {"saved_model.pb": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model"]
