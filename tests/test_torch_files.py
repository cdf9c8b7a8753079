"""Reading .safetensors and torch .pth files with numpy: every format and dtype, and no code run from a file.

formats_zip.pth and formats_legacy.pth were written by torch.save (tools/torch_reference.py) in its zip and
its pre-1.6 format; formats.npz holds the same tensors as torch saw them.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vision_core.errors import AppError
from vision_core.storage.torch_files import UnsafeCheckpoint, read_checkpoint, read_pth, read_safetensors, state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "pretrained"
REFUSAL = (
    "refused to unpickle global os.system: a weights file needs only tensors, storages and OrderedDict "
    "(the file may run code when loaded; do not torch.load it)"
)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], header_extra: dict | None = None) -> None:
    header, blobs, offset = dict(header_extra or {}), [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        dtype = {"float32": "F32", "float16": "F16", "int64": "I64"}[array.dtype.name]
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def malicious_pth(path: Path, marker: Path) -> None:
    """A torch zip checkpoint whose pickle calls ``os.system("touch <marker>")`` when unpickled."""
    command = f"touch {marker}".encode()
    payload = b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(command)) + command + b"q\x01\x85q\x02Rq\x03."
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")


@pytest.mark.parametrize("name", ["formats_zip.pth", "formats_legacy.pth"])
def test_both_torch_formats_read_every_dtype_and_strided_views_exactly(name):
    expected = dict(np.load(FIXTURES / "formats.npz"))
    read = read_pth(FIXTURES / name)
    assert read["epoch"] == 3
    tensors = read["state_dict"]
    assert list(tensors) == list(expected)
    for key, value in expected.items():
        assert tensors[key].shape == value.shape, key
        np.testing.assert_array_equal(tensors[key].astype(value.dtype), value, err_msg=key)
    assert tensors["conv.weight"].dtype == np.float32 and tensors["bn.running_var"].dtype == np.float64
    assert tensors["half"].dtype == np.float16 and tensors["bfloat16"].dtype == np.float32  # bf16 widened exactly
    np.testing.assert_array_equal(tensors["conv.weight_t"], tensors["conv.weight"].transpose(2, 3, 1, 0))


def test_read_checkpoint_unwraps_the_state_dict_and_data_parallel_prefixes(tmp_path):
    tensors = read_checkpoint(FIXTURES / "formats_zip.pth")
    assert sorted(tensors) == sorted(np.load(FIXTURES / "formats.npz").files)  # "epoch" dropped
    weight = np.ones((2, 2), np.float32)
    assert list(state_dict({"model": {"module.a.weight": weight, "module.b": weight}}, "x")) == ["a.weight", "b"]
    assert list(state_dict({"net": {"a": weight}, "optimizer": {}}, "x")) == ["a"]
    with pytest.raises(AppError, match=r"^x: no state dict found \(top-level keys: epoch, best\)$"):
        state_dict({"epoch": 1, "best": 0.5}, "x")


def test_a_pickle_naming_os_system_is_refused_before_anything_runs(tmp_path):
    path, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    malicious_pth(path, marker)
    with pytest.raises(UnsafeCheckpoint) as caught:
        read_checkpoint(path)
    assert str(caught.value) == f"{path}: {REFUSAL}"
    assert not marker.exists()


def test_a_legacy_pickle_naming_os_system_is_refused_too(tmp_path):
    marker = tmp_path / "pwned"
    command = f"touch {marker}".encode()
    path = tmp_path / "evil_legacy.pth"
    path.write_bytes(b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(command)) + command + b"q\x01\x85q\x02R.")
    with pytest.raises(UnsafeCheckpoint, match="refused to unpickle global os.system"):
        read_checkpoint(path)
    assert not marker.exists()


def test_safetensors_round_trip_every_dtype_and_ignore_metadata(tmp_path):
    tensors = {
        "w": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "h": np.array([1.5, -2.0], np.float16),
        "n": np.array(7, np.int64),
    }
    write_safetensors(tmp_path / "a.safetensors", tensors, {"__metadata__": {"format": "pt"}})
    read = read_safetensors(tmp_path / "a.safetensors")
    assert list(read) == ["w", "h", "n"]
    for name, value in tensors.items():
        assert read[name].dtype == value.dtype and read[name].shape == value.shape
        np.testing.assert_array_equal(read[name], value)


def test_malformed_safetensors_are_errors_naming_the_file_and_the_problem(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x01\x00")
    with pytest.raises(AppError, match=r"bad.safetensors: not a safetensors file \(shorter than its 8-byte"):
        read_safetensors(path)
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(AppError, match=r"bad.safetensors: not a safetensors file \(header length 1000 for 10 bytes\)"):
        read_safetensors(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 8)
    with pytest.raises(AppError, match=r"tensor 'w': bytes 0\.\.16 outside the 8-byte data"):
        read_safetensors(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 8)
    with pytest.raises(AppError, match=r"tensor 'w': 8 bytes for shape \(3,\) of 4-byte values"):
        read_safetensors(path)


def test_a_file_that_is_no_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(AppError, match=r"notes.pth: not a readable torch checkpoint"):
        read_checkpoint(path)
    with pytest.raises(AppError, match=r"missing.pth: checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pth")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/other.txt", "x")
    path.write_bytes(buffer.getvalue())
    with pytest.raises(AppError, match=r"a torch zip checkpoint holds one <root>/data.pkl; found none"):
        read_checkpoint(path)


def crafted_pth(path: Path, size: tuple[int, ...], stride: tuple[int, ...], values: int = 4) -> None:
    """A torch zip checkpoint {"w": tensor} over a float32 storage of ``values`` values, with any size/stride."""

    def ints(numbers):
        return b"(" + b"".join(b"J" + struct.pack("<i", n) for n in numbers) + b"t"

    def text(s: str) -> bytes:
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    pid = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu") + b"K" + bytes([values]) + b"tQ"
    tensor = (
        b"ctorch._utils\n_rebuild_tensor_v2\n("
        + pid
        + b"K\x00"
        + ints(size)
        + ints(stride)
        + b"\x89ccollections\nOrderedDict\n)RtR"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}" + text("w") + tensor + b"s.")
        archive.writestr("archive/data/0", np.arange(values, dtype="<f4").tobytes())


def test_sizes_and_strides_from_the_file_never_read_outside_the_storage(tmp_path):
    path = tmp_path / "crafted.pth"
    crafted_pth(path, (2, 2), (1, 2))  # a transposed view of the 4 values
    np.testing.assert_array_equal(read_checkpoint(path)["w"], np.arange(4, dtype=np.float32).reshape(2, 2).T)
    crafted_pth(path, (8,), (1,))
    with pytest.raises(AppError, match=r"crafted.pth: tensor of size \(8,\) runs past its storage \(4 values\)$"):
        read_checkpoint(path)
    crafted_pth(path, (2,), (-1,))
    with pytest.raises(AppError, match=r"crafted.pth: malformed tensor \(size \(2,\), stride \(-1,\), offset 0\)$"):
        read_checkpoint(path)
