"""The TFLite Model Metadata schema as data, with one flatbuffer encoder and decoder.

:data:`TABLES` transcribes TFLite Support's public ``metadata_schema.fbs`` (version
1.5.0, file identifier ``M001``, root ``ModelMetadata``) and MediaPipe's
``image_segmenter_metadata_schema.fbs`` (``V001``, root ``ImageSegmenterOptions``): each
table is its fields in declaration order, which fixes their vtable slots (a union
takes two slots: its type byte, then its value).

Values are plain dicts keyed by the schema's field names: strings, numbers, lists,
enum names as strings, ``bytes`` for ``[ubyte]``, and a union as a one-key dict
``{member table name: {fields}}``. :func:`decode` returns the same form, with every
scalar field present (its schema default when absent) and absent strings, tables
and vectors left out.
"""

from __future__ import annotations

from typing import Any

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

from tflite.model_file import aligned_bytes

MODEL_METADATA_IDENTIFIER = b"M001"
SEGMENTER_OPTIONS_IDENTIFIER = b"V001"

ENUMS = {
    "AssociatedFileType": (
        "UNKNOWN",
        "DESCRIPTIONS",
        "TENSOR_AXIS_LABELS",
        "TENSOR_VALUE_LABELS",
        "TENSOR_AXIS_SCORE_CALIBRATION",
        "VOCABULARY",
        "SCANN_INDEX_FILE",
    ),
    "ColorSpaceType": ("UNKNOWN", "RGB", "GRAYSCALE"),
    "BoundingBoxType": ("UNKNOWN", "BOUNDARIES", "UPPER_LEFT", "CENTER"),
    "CoordinateType": ("RATIO", "PIXEL"),
    "ScoreTransformationType": ("IDENTITY", "LOG", "INVERSE_LOGISTIC"),
    "Activation": ("NONE", "SIGMOID", "SOFTMAX"),
}
UNIONS = {
    "ContentProperties": ("FeatureProperties", "ImageProperties", "BoundingBoxProperties", "AudioProperties"),
    "ProcessUnitOptions": (
        "NormalizationOptions",
        "ScoreCalibrationOptions",
        "ScoreThresholdingOptions",
        "BertTokenizerOptions",
        "SentencePieceTokenizerOptions",
        "RegexTokenizerOptions",
    ),
}
TABLES = {
    "AssociatedFile": (
        ("name", "string"),
        ("description", "string"),
        ("type", "AssociatedFileType"),
        ("locale", "string"),
        ("version", "string"),
    ),
    "FeatureProperties": (),
    "ImageSize": (("width", "uint"), ("height", "uint")),
    "ImageProperties": (("color_space", "ColorSpaceType"), ("default_size", "ImageSize")),
    "BoundingBoxProperties": (("index", "[uint]"), ("type", "BoundingBoxType"), ("coordinate_type", "CoordinateType")),
    "AudioProperties": (("sample_rate", "uint"), ("channels", "uint")),
    "ValueRange": (("min", "int"), ("max", "int")),
    "Content": (("content_properties", "ContentProperties"), ("range", "ValueRange")),
    "NormalizationOptions": (("mean", "[float]"), ("std", "[float]")),
    "ScoreCalibrationOptions": (("score_transformation", "ScoreTransformationType"), ("default_score", "float")),
    "ScoreThresholdingOptions": (("global_score_threshold", "float"),),
    "BertTokenizerOptions": (("vocab_file", "[AssociatedFile]"),),
    "SentencePieceTokenizerOptions": (("sentencePiece_model", "[AssociatedFile]"), ("vocab_file", "[AssociatedFile]")),
    "RegexTokenizerOptions": (("delim_regex_pattern", "string"), ("vocab_file", "[AssociatedFile]")),
    "ProcessUnit": (("options", "ProcessUnitOptions"),),
    "Stats": (("max", "[float]"), ("min", "[float]")),
    "TensorGroup": (("name", "string"), ("tensor_names", "[string]")),
    "TensorMetadata": (
        ("name", "string"),
        ("description", "string"),
        ("dimension_names", "[string]"),
        ("content", "Content"),
        ("process_units", "[ProcessUnit]"),
        ("stats", "Stats"),
        ("associated_files", "[AssociatedFile]"),
    ),
    "CustomMetadata": (("name", "string"), ("data", "[ubyte]")),
    "SubGraphMetadata": (
        ("name", "string"),
        ("description", "string"),
        ("input_tensor_metadata", "[TensorMetadata]"),
        ("output_tensor_metadata", "[TensorMetadata]"),
        ("associated_files", "[AssociatedFile]"),
        ("input_process_units", "[ProcessUnit]"),
        ("output_process_units", "[ProcessUnit]"),
        ("input_tensor_groups", "[TensorGroup]"),
        ("output_tensor_groups", "[TensorGroup]"),
        ("custom_metadata", "[CustomMetadata]"),
    ),
    "ModelMetadata": (
        ("name", "string"),
        ("description", "string"),
        ("version", "string"),
        ("subgraph_metadata", "[SubGraphMetadata]"),
        ("author", "string"),
        ("license", "string"),
        ("associated_files", "[AssociatedFile]"),
        ("min_parser_version", "string"),
    ),
    "ImageSegmenterOptions": (("activation", "Activation"), ("min_parser_version", "string")),
}
SCALARS = {"uint": N.Uint32Flags, "int": N.Int32Flags, "float": N.Float32Flags}
# ``[ubyte]`` only appears as CustomMetadata.data, declared ``force_align: 16``.
UBYTE_ALIGNMENT = 16


def encode(root: str, value: dict, file_identifier: bytes) -> bytes:
    """Flatbuffer bytes of ``value``, a dict of table ``root`` (see the module docstring)."""
    builder = flatbuffers.Builder(1024)
    builder.Finish(_encode_table(builder, root, value), file_identifier=file_identifier)
    return bytes(builder.Output())


def decode(data: bytes, root: str) -> dict:
    """The dict of table ``root`` stored in flatbuffer ``data``."""
    return _decode_table(Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0)), root)


def _encode_table(builder: flatbuffers.Builder, table: str, value: dict) -> int:
    unknown = set(value) - {name for name, _ in TABLES[table]}
    if unknown:
        raise KeyError(f"{table} has no field(s) {sorted(unknown)}")
    offsets, scalars, slot = {}, [], 0
    for name, kind in TABLES[table]:
        field = value.get(name)
        if kind in UNIONS:
            if field is not None:
                ((member, content),) = field.items()
                scalars.append((slot, N.Uint8Flags, UNIONS[kind].index(member) + 1))
                offsets[slot + 1] = _encode_table(builder, member, content)
            slot += 2
            continue
        if field is not None:
            if kind in ENUMS:
                scalars.append((slot, N.Int8Flags, ENUMS[kind].index(field)))
            elif kind in SCALARS:
                scalars.append((slot, SCALARS[kind], field))
            else:
                offsets[slot] = _encode_reference(builder, kind, field)
        slot += 1
    builder.StartObject(slot)
    for field_slot, offset in offsets.items():
        builder.PrependUOffsetTRelativeSlot(field_slot, offset, 0)
    for field_slot, flags, number in scalars:
        builder.PrependSlot(flags, field_slot, number, 0)
    return builder.EndObject()


def _encode_reference(builder: flatbuffers.Builder, kind: str, field: str | bytes | dict[str, Any] | list[Any]) -> int:
    """Offset of a string, table or vector field (written before its table starts)."""
    if kind == "string":
        return builder.CreateString(field)
    if kind in TABLES:
        return _encode_table(builder, kind, field)
    element = kind[1:-1]
    if element == "ubyte":
        return aligned_bytes(builder, bytes(field), UBYTE_ALIGNMENT)
    if element in SCALARS:
        builder.StartVector(4, len(field), 4)
        for number in reversed(field):
            builder.Prepend(SCALARS[element], number)
        return builder.EndVector()
    items = [_encode_reference(builder, element, item) for item in field]
    builder.StartVector(4, len(items), 4)
    for offset in reversed(items):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _decode_table(tab: Table, table: str) -> dict:
    out, slot = {}, 0
    for name, kind in TABLES[table]:
        if kind in UNIONS:
            member = tab.GetSlot(4 + 2 * slot, 0, N.Uint8Flags)
            offset = tab.Offset(4 + 2 * (slot + 1))
            if member and offset and member <= len(UNIONS[kind]):
                content = Table(tab.Bytes, 0)
                tab.Union(content, offset)
                out[name] = {UNIONS[kind][member - 1]: _decode_table(content, UNIONS[kind][member - 1])}
            slot += 2
            continue
        offset = tab.Offset(4 + 2 * slot)
        if kind in ENUMS or kind in SCALARS:
            number = tab.GetSlot(4 + 2 * slot, 0, N.Int8Flags if kind in ENUMS else SCALARS[kind])
            out[name] = ENUMS[kind][number] if kind in ENUMS and number < len(ENUMS[kind]) else number
        elif offset:
            out[name] = _decode_reference(tab, kind, offset)
        slot += 1
    return out


def _decode_reference(tab: Table, kind: str, offset: int) -> str | bytes | dict[str, Any] | list[Any]:
    if kind == "string":
        return tab.String(offset + tab.Pos).decode()
    if kind in TABLES:
        return _decode_table(Table(tab.Bytes, tab.Indirect(offset + tab.Pos)), kind)
    element = kind[1:-1]
    if element == "ubyte":
        return tab.GetVectorAsNumpy(N.Uint8Flags, offset).tobytes()
    if element in SCALARS:
        return tab.GetVectorAsNumpy(SCALARS[element], offset).tolist()
    start, count = tab.Vector(offset), tab.VectorLen(offset)
    if element == "string":
        return [tab.String(start + 4 * i).decode() for i in range(count)]
    return [_decode_table(Table(tab.Bytes, tab.Indirect(start + 4 * i)), element) for i in range(count)]
