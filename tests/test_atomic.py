import pytest

from vision_core.atomic import write_atomic


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
