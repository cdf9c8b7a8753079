"""Read and amend a ``.tflite`` flatbuffer without an interpreter.

Works on the raw bytes with the generated TFLite schema
(``ai_edge_litert.schema_py_generated``): file checks, the model's input and output
tensors named by signature, and storing a named metadata buffer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
from ai_edge_litert import schema_py_generated as schema

from tflite.errors import EdgeKitError

FILE_IDENTIFIER = b"TFL3"
SIGNATURE = "serving_default"
# TFLite's schema asks for 16-byte aligned buffer data (``force_align: 16``); the
# generated Python packer ignores it, so buffers are packed here.
BUFFER_ALIGNMENT = 16
_TYPE_NAMES = {value: name.lower() for name, value in vars(schema.TensorType).items() if name.isupper()}


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: ``name`` is its signature name (the tensor name if unsigned)."""

    name: str
    index: int
    dtype: str
    shape: tuple[int, ...]


def load_model(model: bytes | str | os.PathLike) -> tuple[bytes, str]:
    """``(flatbuffer bytes, name for messages)`` of a model path or of model bytes.

    Raises :class:`EdgeKitError` naming the file when it is missing or not a TFLite file.
    """
    if isinstance(model, (bytes, bytearray)):
        data, source = bytes(model), "model bytes"
    else:
        path = Path(model)
        if not path.is_file():
            raise EdgeKitError(f"{path}: no such model file")
        data, source = path.read_bytes(), str(path)
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise EdgeKitError(f"{source}: not a TFLite model (no {FILE_IDENTIFIER.decode()} flatbuffer identifier)")
    return data, source


def io_tensors(data: bytes, signature: str = SIGNATURE) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Inputs and outputs of subgraph 0, in the subgraph's own order, named by ``signature``."""
    model = schema.Model.GetRootAs(data, 0)
    subgraph = model.Subgraphs(0)
    names: dict[int, str] = {}
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        if sig.SignatureKey().decode() == signature:
            for maps, count in ((sig.Inputs, sig.InputsLength()), (sig.Outputs, sig.OutputsLength())):
                names.update({maps(j).TensorIndex(): maps(j).Name().decode() for j in range(count)})

    def info(index: int) -> TensorInfo:
        tensor = subgraph.Tensors(index)
        return TensorInfo(
            names.get(index, tensor.Name().decode()), index, _TYPE_NAMES[tensor.Type()], tensor_shape(tensor)
        )

    return ([info(int(i)) for i in subgraph.InputsAsNumpy()], [info(int(i)) for i in subgraph.OutputsAsNumpy()])


def tensor_shape(tensor: schema.Tensor) -> tuple[int, ...]:
    """The shape of a schema ``Tensor`` (``()`` for a scalar)."""
    return tuple(int(tensor.Shape(j)) for j in range(tensor.ShapeLength()))


def metadata_buffer(data: bytes, name: str) -> bytes | None:
    """The content of the model's metadata entry ``name``, or None when it has none."""
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == name:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def with_metadata_buffer(data: bytes, name: str, content: bytes) -> bytes:
    """A copy of the flatbuffer with ``content`` stored as metadata entry ``name``.

    An existing entry of that name is replaced. Anything appended after the flatbuffer
    (an associated-files zip) is dropped: the result is the bare flatbuffer.
    """
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    # The object API holds names as bytes.
    entry = next((m for m in model.metadata or [] if m.name == name.encode()), None)
    if entry is None:
        entry = schema.MetadataT()
        entry.name, entry.buffer = name.encode(), len(model.buffers)
        model.buffers.append(schema.BufferT())
        model.metadata = [*(model.metadata or []), entry]
    model.buffers[entry.buffer].data = content
    return pack_model(model, len(data) + len(content))


def builtin_code(code: schema.OperatorCodeT) -> int:
    """The builtin operator of an operator code (the larger of its current and deprecated fields)."""
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def pack_model(model: schema.ModelT, size_hint: int = 0) -> bytes:
    """The flatbuffer of an object-API ``model`` (its buffers' data 16-byte aligned)."""
    model.buffers = [_AlignedBufferT(b.data, b.offset, b.size) for b in model.buffers]
    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def aligned_bytes(builder: flatbuffers.Builder, content: bytes, alignment: int = BUFFER_ALIGNMENT) -> int:
    """Write ``content`` as a ``[ubyte]`` vector whose data starts ``alignment``-aligned; its offset."""
    builder.StartVector(1, len(content), alignment)
    builder.head -= len(content)
    builder.Bytes[builder.head : builder.head + len(content)] = content
    return builder.EndVector()


class _AlignedBufferT(schema.BufferT):
    """A model buffer packed with its data 16-byte aligned, as the TFLite schema asks."""

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 (the generated object API's name)
        data = None if self.data is None else aligned_bytes(builder, bytes(self.data))
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)
