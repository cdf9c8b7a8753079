"""Read PyTorch checkpoints into numpy without torch and without running code from the file.

Two formats, both read into ``{name: np.ndarray}`` (the tensors as PyTorch stores them: NCHW
layouts, OIHW kernels):

* ``.safetensors`` (timm, Hugging Face): an 8-byte little-endian header length, a JSON header
  ``{name: {dtype, shape, data_offsets}}``, then the raw tensor bytes. Nothing executable.
* ``.pth`` / ``.pt`` / ``.bin`` written by ``torch.save``: the zip format (``<root>/data.pkl``
  and one ``<root>/data/<key>`` file per storage) and the legacy pre-1.6 format (pickles and
  the storages' bytes one after another). The pickles are read by :class:`RestrictedUnpickler`,
  which knows only the globals a state dict needs (``collections.OrderedDict``, torch's tensor
  and parameter rebuild functions, the storage types) and refuses any other global with
  :class:`UnsafeCheckpoint`, before anything is called: a pickle that names ``os.system`` is an
  error, never a call.

A checkpoint is often a state dict wrapped in a dict (``{"model": ...}``, ``{"state_dict": ...}``,
``{"net": ...}``) and saved from a ``DataParallel`` model (``module.`` prefixes):
:func:`read_checkpoint` unwraps both.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from vision_core.errors import AppError

SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": "bfloat16",
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STATE_DICT_KEYS = ("state_dict", "model", "net", "model_state", "module")
MAX_HEADER = 100 * 2**20


class UnsafeCheckpoint(AppError):
    """The checkpoint's pickle names a global that a state dict does not need."""


def _array(data: bytes | memoryview, dtype, shape, where: str) -> np.ndarray:
    """``data`` as an array of ``shape``; bfloat16 widens exactly to float32."""
    count = int(np.prod(shape, dtype=np.int64))
    itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    if len(data) != count * itemsize:
        raise AppError(f"{where}: {len(data)} bytes for shape {tuple(shape)} of {itemsize}-byte values")
    if dtype == "bfloat16":
        bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype)


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``.safetensors`` file; :class:`AppError` naming the file for a malformed one."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise AppError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(MAX_HEADER, len(data) - 8):
        raise AppError(f"{path}: not a safetensors file (header length {length} for {len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AppError(f"{path}: not a safetensors file (header is not JSON: {error})") from None
    if not isinstance(header, dict):
        raise AppError(f"{path}: not a safetensors file (header is not a JSON object)")
    body = memoryview(data)[8 + length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = SAFETENSORS_DTYPES[entry["dtype"]]
            begin, end = (int(v) for v in entry["data_offsets"])
            shape = tuple(int(d) for d in entry["shape"])
        except (KeyError, TypeError, ValueError):
            raise AppError(f"{path}: tensor {name!r}: bad header entry {entry!r}") from None
        if not 0 <= begin <= end <= len(body):
            raise AppError(f"{path}: tensor {name!r}: bytes {begin}..{end} outside the {len(body)}-byte data")
        tensors[name] = _array(body[begin:end], dtype, shape, f"{path}: tensor {name!r}")
    return tensors


class _Storage:
    """A storage named in the pickle; its bytes are read once the pickle is loaded."""

    def __init__(self, key: str, dtype):
        self.key, self.dtype = key, dtype


class _Tensor:
    """``_rebuild_tensor_v2``'s arguments, made an array by :func:`_materialise`."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(n) for n in size), tuple(int(n) for n in stride)


def _rebuild_tensor(storage, offset, size, stride, *_ignored):  # requires_grad, backward hooks, metadata
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpoint(f"a tensor whose storage is a {type(storage).__name__}, not a storage")
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *_ignored):  # requires_grad, backward hooks
    return data


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, STORAGE_DTYPES[name]


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a state dict only: the globals below, nothing else (:class:`UnsafeCheckpoint`)."""

    ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
    }

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source
        self.dtypes: dict[str, object] = {}  # storage key -> dtype, as the pickle names them

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpoint(
                f"{self.source}: refused to unpickle global {module}.{name}: a weights file needs only "
                "tensors, storages and OrderedDict (the file may run code when loaded; do not torch.load it)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpoint(f"{self.source}: unexpected persistent id {pid!r}")
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpoint(f"{self.source}: persistent id with storage type {storage_type!r}")
        self.dtypes[str(pid[2])] = storage_type.dtype
        return _Storage(str(pid[2]), storage_type.dtype)


def _materialise(value, storages: dict[str, bytes], source: str):
    """Replace every :class:`_Tensor` in nested dicts/lists/tuples by its array."""
    if isinstance(value, _Tensor):
        dtype = value.storage.dtype
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if value.storage.key not in storages:
            raise AppError(f"{source}: storage {value.storage.key} is missing")
        data = storages[value.storage.key]
        flat = _array(data, dtype, (len(data) // itemsize,), source)
        size, stride, offset = value.size, value.stride, value.offset
        if len(size) != len(stride) or offset < 0 or min((*size, *stride), default=0) < 0:
            raise AppError(f"{source}: malformed tensor (size {size}, stride {stride}, offset {offset})")
        if 0 in size:
            return np.zeros(size, flat.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:  # as_strided reads whatever memory the strides point at: never past the storage
            raise AppError(f"{source}: tensor of size {size} runs past its storage ({flat.size} values)")
        if not size:
            return np.array(flat[offset])
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride)
        )
        return np.ascontiguousarray(view)
    if isinstance(value, dict):
        return type(value)((k, _materialise(v, storages, source)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_materialise(v, storages, source) for v in value)
    return value


def _read_zip(path: Path) -> object:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise AppError(f"{path}: a torch zip checkpoint holds one <root>/data.pkl; found {pickles or 'none'}")
        root = pickles[0].split("/")[0]
        order = f"{root}/byteorder"
        if order in names and archive.read(order).decode().strip() != "little":
            raise AppError(f"{path}: big-endian checkpoints are not supported")
        result = RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), str(path)).load()
        prefix = f"{root}/data/"
        storages = {n[len(prefix) :]: archive.read(n) for n in names if n.startswith(prefix)}
    return _materialise(result, storages, str(path))


def _read_legacy(path: Path) -> object:
    with path.open("rb") as f:
        if RestrictedUnpickler(f, str(path)).load() != LEGACY_MAGIC:
            raise AppError(f"{path}: not a torch checkpoint (neither a zip nor the legacy format)")
        RestrictedUnpickler(f, str(path)).load()  # protocol version
        RestrictedUnpickler(f, str(path)).load()  # system info
        unpickler = RestrictedUnpickler(f, str(path))
        result = unpickler.load()
        keys = RestrictedUnpickler(f, str(path)).load()
        storages = {}
        for key in map(str, keys):  # each storage: its element count (int64), then its bytes
            if key not in unpickler.dtypes:
                raise AppError(f"{path}: storage {key} is not named by the checkpoint's pickle")
            dtype = unpickler.dtypes[key]
            (count,) = struct.unpack("<q", f.read(8))
            storages[key] = f.read(count * (2 if dtype == "bfloat16" else np.dtype(dtype).itemsize))
    return _materialise(result, storages, str(path))


def read_pth(path: str | Path) -> object:
    """The object ``torch.save`` wrote to ``path``, tensors as arrays; refuses unsafe pickles."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        return _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile, ValueError, TypeError) as error:
        raise AppError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from None


def state_dict(obj, source: str) -> dict[str, np.ndarray]:
    """The ``{name: array}`` state dict inside ``obj``: unwrapped from ``{"model": ...}``-style dicts,
    ``module.`` prefixes removed, non-tensor entries dropped."""
    while isinstance(obj, dict) and not any(isinstance(v, np.ndarray) for v in obj.values()):
        inner = next((obj[k] for k in STATE_DICT_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise AppError(f"{source}: no state dict found (top-level keys: {', '.join(map(str, list(obj)[:10]))})")
        obj = inner
    if not isinstance(obj, dict):
        raise AppError(f"{source}: holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``.safetensors`` or torch checkpoint file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise AppError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return state_dict(read_pth(path), str(path))
