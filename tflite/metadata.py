"""TFLite Model Metadata of the suite's exports: written and read without TensorFlow.

:func:`add_metadata` stores the standard metadata (``metadata_schema.fbs``, see
:mod:`tflite.metadata_schema`) as the model buffer listed under ``TFLITE_METADATA``,
and packs the associated files as an uncompressed zip appended to the flatbuffer
(where MediaPipe Tasks and the TFLite Task Library look for them):

* ``labels.txt``: one label per line, on the output that carries class indices.
* ``vision_suite.json``: a model-level file holding a :class:`ModelInfo` (task, labels,
  input size, normalisation, input value range, output names, name, version, MACs), so
  :func:`read_metadata` needs ``zipfile`` alone.

What each task writes (what MediaPipe reads):

* every task: the input image is RGB (``ImageProperties``), normalised as
  ``(pixel - mean) / std`` (``NormalizationOptions``; MediaPipe ignores it for uint8
  inputs, whose quantization must then do the normalising), ``Stats`` of its value range.
* ``classification``: output ``probabilities [1, classes]`` with the labels as
  ``TENSOR_AXIS_LABELS``. MediaPipe applies no activation: export probabilities.
* ``segmentation``: output ``masks [1, H, W, classes]`` (a grayscale image per class,
  content dims 1..2) with ``TENSOR_AXIS_LABELS``, and the activation MediaPipe applies
  (``SEGMENTER_METADATA`` custom metadata; ``none`` for a model ending in softmax).
* ``detection`` (models ending in ``TFLite_Detection_PostProcess``): outputs ``boxes
  [1, N, 4]`` as ``[ymin, xmin, ymax, xmax]`` relative to the image, ``classes [1, N]``
  (indices into labels that exclude the background, labels as ``TENSOR_VALUE_LABELS``),
  ``scores [1, N]`` and ``num_detections [1]``, named location / category / score /
  number of detections as MediaPipe's object detector looks them up.
* ``super_resolution``: output ``sr_image [1, H*s, W*s, C]`` in the input's channels and
  normalisation; no labels (``labels.txt`` is empty).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from dataclasses import dataclass, field

from tflite.errors import EdgeKitError
from tflite.macs import count_macs
from tflite.metadata_schema import (
    MODEL_METADATA_IDENTIFIER,
    SEGMENTER_OPTIONS_IDENTIFIER,
    decode,
    encode,
)
from tflite.model_file import (
    TensorInfo,
    io_tensors,
    load_model,
    metadata_buffer,
    with_metadata_buffer,
)

METADATA_NAME = "TFLITE_METADATA"
SEGMENTER_METADATA_NAME = "SEGMENTER_METADATA"
LABELS_FILE = "labels.txt"
INFO_FILE = "vision_suite.json"
TASK_OUTPUTS = {
    "classification": ("probabilities",),
    "segmentation": ("masks",),
    "detection": ("boxes", "classes", "scores", "num_detections"),
    "super_resolution": ("sr_image",),
}
UNLABELLED_TASKS = ("super_resolution",)  # tasks whose outputs are images, not classes
ACTIVATIONS = ("none", "sigmoid", "softmax")
PIXEL_RANGE = (0.0, 255.0)


class MetadataError(EdgeKitError):
    """A model without the suite's metadata."""


@dataclass
class ModelInfo:
    """What a ``.tflite`` export carries besides its graph.

    ``labels``: class names in output order. ``mean`` / ``std``: one value or one per
    RGB channel; the model's input is ``(pixel - mean) / std`` with pixels in 0..255.
    ``input_size``: ``(height, width)``, and ``macs``: multiply-accumulates per image, both
    filled in from the model by :func:`add_metadata`. ``outputs``: task role (see
    :data:`TASK_OUTPUTS`) -> signature output name; by default the only output, or the
    output named like the role. ``activation``: what MediaPipe's segmenter applies to
    the masks (``none`` when the model already ends in softmax).
    """

    task: str
    name: str
    labels: list[str]
    mean: list[float] = field(default_factory=lambda: [127.5])
    std: list[float] = field(default_factory=lambda: [127.5])
    version: str = "1"
    description: str = ""
    input_size: tuple[int, int] | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    activation: str = "none"
    macs: int | None = None

    def __post_init__(self) -> None:
        if self.task not in TASK_OUTPUTS:
            raise ValueError(f"unknown task {self.task!r}: expected one of {', '.join(TASK_OUTPUTS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}: expected one of {', '.join(ACTIVATIONS)}")
        if not self.labels and self.task not in UNLABELLED_TASKS:
            raise ValueError(f"{self.name}: a {self.task} model needs its labels")
        self.labels = [str(label) for label in self.labels]
        self.mean, self.std = [float(m) for m in self.mean], [float(s) for s in self.std]
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3) or min(self.std) <= 0:
            raise ValueError(
                f"{self.name}: mean/std need 1 or 3 values each and std > 0, got mean={self.mean} std={self.std}"
            )
        if self.input_size is not None:
            self.input_size = (int(self.input_size[0]), int(self.input_size[1]))

    @property
    def input_range(self) -> tuple[float, float]:
        """The model's input value range: pixels 0..255 normalised (extremes over channels)."""
        low = min((PIXEL_RANGE[0] - m) / s for m, s in zip(self.mean, self.std))
        high = max((PIXEL_RANGE[1] - m) / s for m, s in zip(self.mean, self.std))
        return low, high

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "input_range": list(self.input_range)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        values = json.loads(text)
        values.pop("input_range", None)
        return cls(**values)


def add_metadata(flatbuffer: bytes, info: ModelInfo) -> bytes:
    """``flatbuffer`` (a bare ``.tflite``) with metadata and associated files for ``info``.

    The input size, MAC count and output roles of ``info`` are resolved against the
    model; an inconsistency (size, missing output) raises ``ValueError``.
    """
    inputs, outputs = io_tensors(flatbuffer)
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ValueError(
            f"{info.name}: expected one image input [1, H, W, C], got {[(t.name, t.shape) for t in inputs]}"
        )
    size = inputs[0].shape[1:3]
    if info.input_size not in (None, size):
        raise ValueError(f"{info.name}: input_size {info.input_size} but the model takes {size}")
    info = dataclasses.replace(info, input_size=size, outputs=_output_roles(info, outputs), macs=count_macs(flatbuffer))
    metadata = encode("ModelMetadata", _model_metadata(info, inputs[0], outputs), MODEL_METADATA_IDENTIFIER)
    model = with_metadata_buffer(flatbuffer, METADATA_NAME, metadata)
    buffer = io.BytesIO()
    buffer.write(model)
    # Appended, stored uncompressed (the Task libraries read files in place), offsets from the file start.
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "\n".join(info.labels))
        archive.writestr(INFO_FILE, info.to_json())
    return buffer.getvalue()


def read_metadata(model: bytes | str | os.PathLike) -> ModelInfo:
    """The :class:`ModelInfo` of a model path or bytes; :class:`MetadataError` naming the file if absent."""
    data, source = load_model(model)
    info = model_info(data)
    if info is None:
        raise MetadataError(
            f"{source}: no vision-suite metadata ({INFO_FILE} is not packed in the model); "
            "export it with vision_core.export.export_tflite"
        )
    return info


def model_info(data: bytes) -> ModelInfo | None:
    """The :class:`ModelInfo` packed in flatbuffer ``data``, or None when it has none."""
    files = associated_files(data)
    return ModelInfo.from_json(files[INFO_FILE].decode()) if INFO_FILE in files else None


def associated_files(data: bytes) -> dict[str, bytes]:
    """The files packed after the flatbuffer, by name (empty when there are none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}


def read_model_metadata(data: bytes) -> dict | None:
    """The standard ``ModelMetadata`` of flatbuffer ``data`` as a dict, or None when it has none.

    A ``SEGMENTER_METADATA`` entry's data is decoded in place.
    """
    content = metadata_buffer(data, METADATA_NAME)
    if content is None:
        return None
    metadata = decode(content, "ModelMetadata")
    for subgraph in metadata.get("subgraph_metadata", []):
        for custom in subgraph.get("custom_metadata", []):
            if custom.get("name") == SEGMENTER_METADATA_NAME:
                custom["data"] = decode(custom["data"], "ImageSegmenterOptions")
    return metadata


def _output_roles(info: ModelInfo, outputs: list[TensorInfo]) -> dict[str, str]:
    roles = TASK_OUTPUTS[info.task]
    names = [t.name for t in outputs]
    if info.outputs:
        mapping = dict(info.outputs)
    elif len(roles) == 1 and len(names) == 1:
        mapping = {roles[0]: names[0]}
    else:
        mapping = {role: role for role in roles}
    if sorted(mapping) != sorted(roles) or sorted(mapping.values()) != sorted(names):
        raise ValueError(
            f"{info.name}: a {info.task} model needs outputs {list(roles)}; the model has "
            f"{names} and the mapping is {mapping} (set ModelInfo.outputs)"
        )
    return mapping


def _stats(dtype: str, low: list[float], high: list[float]) -> dict | None:
    """Value range as stored: 0..255 for uint8 tensors, the real range for float ones."""
    if dtype == "uint8":
        return {"min": [0.0], "max": [255.0]}
    return {"min": low, "max": high} if dtype == "float32" else None


def _label_file(kind: str) -> dict:
    return {"name": LABELS_FILE, "description": "Labels, one per line, in class index order.", "type": kind}


def _input_tensor(info: ModelInfo, tensor: TensorInfo) -> dict:
    low = [(PIXEL_RANGE[0] - m) / s for m, s in zip(info.mean, info.std)]
    high = [(PIXEL_RANGE[1] - m) / s for m, s in zip(info.mean, info.std)]
    return {
        "name": "image",
        "description": "RGB image stretched to the input size, normalised as (pixel - mean) / std.",
        "content": {"content_properties": {"ImageProperties": {"color_space": "RGB"}}},
        "process_units": [{"options": {"NormalizationOptions": {"mean": info.mean, "std": info.std}}}],
        "stats": _stats(tensor.dtype, low, high),
    }


def _output_tensor(role: str, tensor: TensorInfo) -> dict:
    detection_dims = {"min": 2, "max": 2}  # the values run along dimension 2 of [1, N, ...]
    features = {"FeatureProperties": {}}
    return {
        "probabilities": {
            "name": "probabilities",
            "description": "Probability of each label.",
            "content": {"content_properties": features},
            "stats": _stats(tensor.dtype, [0.0], [1.0]),
            "associated_files": [_label_file("TENSOR_AXIS_LABELS")],
        },
        "masks": {
            "name": "segmentation_masks",
            "description": "One score map per label.",
            "content": {
                "content_properties": {"ImageProperties": {"color_space": "GRAYSCALE"}},
                "range": {"min": 1, "max": 2},
            },
            "associated_files": [_label_file("TENSOR_AXIS_LABELS")],
        },
        "boxes": {
            "name": "location",
            "description": "Boxes [ymin, xmin, ymax, xmax] relative to the image.",
            "content": {
                "content_properties": {
                    "BoundingBoxProperties": {"index": [1, 0, 3, 2], "type": "BOUNDARIES", "coordinate_type": "RATIO"}
                },
                "range": detection_dims,
            },
        },
        "classes": {
            "name": "category",
            "description": "Label index of each box.",
            "content": {"content_properties": features, "range": detection_dims},
            "associated_files": [_label_file("TENSOR_VALUE_LABELS")],
        },
        "scores": {
            "name": "score",
            "description": "Score of each box.",
            "content": {"content_properties": features, "range": detection_dims},
        },
        "num_detections": {"name": "number of detections", "description": "Number of valid boxes."},
        "sr_image": {
            "name": "sr_image",
            "description": "The upscaled image, in the input's channels and normalisation.",
            "content": {"content_properties": {"ImageProperties": {"color_space": "UNKNOWN"}}},
            "stats": _stats(tensor.dtype, [0.0], [1.0]),
        },
    }[role]


def _model_metadata(info: ModelInfo, image: TensorInfo, outputs: list[TensorInfo]) -> dict:
    """The ``ModelMetadata`` dict; output tensor metadata follow the subgraph's output order."""
    role_of = {name: role for role, name in info.outputs.items()}
    subgraph = {
        "name": info.task,
        "input_tensor_metadata": [_input_tensor(info, image)],
        "output_tensor_metadata": [_output_tensor(role_of[t.name], t) for t in outputs],
    }
    version = "1.0.0"
    if info.task == "detection":
        subgraph["output_tensor_groups"] = [
            {"name": "detection_result", "tensor_names": ["location", "category", "score"]}
        ]
        version = "1.2.0"
    if info.task == "segmentation":
        options = {"activation": info.activation.upper(), "min_parser_version": "1.0.0"}
        subgraph["custom_metadata"] = [
            {
                "name": SEGMENTER_METADATA_NAME,
                "data": encode("ImageSegmenterOptions", options, SEGMENTER_OPTIONS_IDENTIFIER),
            }
        ]
        version = "1.5.0"
    return {
        "name": info.name,
        "description": info.description
        or f"{info.name}: {info.task} on {info.input_size[1]}x"
        f"{info.input_size[0]} RGB images, {len(info.labels)} labels.",
        "version": info.version,
        "subgraph_metadata": [subgraph],
        "associated_files": [
            {"name": INFO_FILE, "description": "Vision-suite model information (JSON).", "type": "DESCRIPTIONS"}
        ],
        "min_parser_version": version,
    }
