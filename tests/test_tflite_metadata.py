"""TFLite Model Metadata written and read by the edge kit, without TensorFlow in the kit."""

import dataclasses
import zipfile

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tiny_models import (
    LABELS,
    SIZE,
    classifier_info,
    constant_detector,
    tiny_classifier,
    tiny_segmenter,
)

from tflite.errors import EdgeKitError
from tflite.metadata import (
    INFO_FILE,
    LABELS_FILE,
    MetadataError,
    ModelInfo,
    add_metadata,
    read_metadata,
    read_model_metadata,
)
from tflite.model_file import io_tensors
from tflite.runtime import TFLiteModel
from vision_core.quant.convert import convert


@pytest.fixture(scope="module")
def bare():
    """Float32 flatbuffers without metadata, by task."""
    return {
        "classification": convert(tiny_classifier(), "float32"),
        "segmentation": convert(tiny_segmenter(), "float32"),
        "detection": convert(constant_detector(), "float32"),
    }


def _subgraph(model: bytes) -> dict:
    return read_model_metadata(model)["subgraph_metadata"][0]


def test_classifier_info_round_trips_with_size_outputs_and_macs_filled_in(bare):
    info = classifier_info(mean=[127.5], std=[127.5], version="3")
    model = add_metadata(bare["classification"], info)
    assert read_metadata(model) == dataclasses.replace(
        info, input_size=(SIZE, SIZE), outputs={"probabilities": "logits"}, macs=read_metadata(model).macs
    )
    assert read_metadata(model).macs > 0


def test_classifier_standard_metadata_has_what_mediapipe_reads(bare):
    model = add_metadata(bare["classification"], classifier_info(mean=[127.5], std=[127.5]))
    metadata = read_model_metadata(model)
    (image,), (scores,) = _subgraph(model)["input_tensor_metadata"], _subgraph(model)["output_tensor_metadata"]
    assert metadata["name"] == "tiny_classifier" and metadata["min_parser_version"] == "1.0.0"
    assert image["content"]["content_properties"] == {"ImageProperties": {"color_space": "RGB"}}
    assert image["process_units"] == [{"options": {"NormalizationOptions": {"mean": [127.5], "std": [127.5]}}}]
    assert image["stats"] == {"min": [-1.0], "max": [1.0]}  # float input: the normalised range
    assert [(f["name"], f["type"]) for f in scores["associated_files"]] == [(LABELS_FILE, "TENSOR_AXIS_LABELS")]
    assert [f["name"] for f in metadata["associated_files"]] == [INFO_FILE]


def test_segmenter_metadata_carries_the_activation_mediapipe_applies(bare):
    info = ModelInfo("segmentation", "tiny_segmenter", ["background", "circle", "square"], activation="softmax")
    model = add_metadata(bare["segmentation"], info)
    subgraph = _subgraph(model)
    (masks,) = subgraph["output_tensor_metadata"]
    assert read_model_metadata(model)["min_parser_version"] == "1.5.0"
    assert subgraph["custom_metadata"] == [
        {"name": "SEGMENTER_METADATA", "data": {"activation": "SOFTMAX", "min_parser_version": "1.0.0"}}
    ]
    assert masks["content"] == {
        "content_properties": {"ImageProperties": {"color_space": "GRAYSCALE"}},
        "range": {"min": 1, "max": 2},
    }
    assert masks["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    assert read_metadata(model).outputs == {"masks": "masks"}


def test_detector_output_metadata_follows_the_subgraph_output_order(bare):
    info = ModelInfo("detection", "constant_detector", LABELS)
    model = add_metadata(bare["detection"], info)
    subgraph = _subgraph(model)
    standard_name = {
        "boxes": "location",
        "classes": "category",
        "scores": "score",
        "num_detections": "number of detections",
    }
    _, outputs = io_tensors(model)
    assert [m["name"] for m in subgraph["output_tensor_metadata"]] == [standard_name[t.name] for t in outputs]
    by_name = {m["name"]: m for m in subgraph["output_tensor_metadata"]}
    assert by_name["location"]["content"] == {
        "content_properties": {
            "BoundingBoxProperties": {"index": [1, 0, 3, 2], "type": "BOUNDARIES", "coordinate_type": "RATIO"}
        },
        "range": {"min": 2, "max": 2},
    }
    assert by_name["category"]["associated_files"][0]["type"] == "TENSOR_VALUE_LABELS"
    assert subgraph["output_tensor_groups"] == [
        {"name": "detection_result", "tensor_names": ["location", "category", "score"]}
    ]
    assert read_model_metadata(model)["min_parser_version"] == "1.2.0"


def test_detector_without_the_role_outputs_is_refused_with_the_names(bare):
    with pytest.raises(ValueError, match=r"needs outputs \['boxes', 'classes', 'scores', 'num_detections'\]"):
        add_metadata(bare["detection"], ModelInfo("detection", "d", LABELS, outputs={"boxes": "boxes"}))


def test_associated_files_are_an_uncompressed_zip_after_the_flatbuffer(bare, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(add_metadata(bare["classification"], classifier_info()))
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [LABELS_FILE, INFO_FILE]
        assert archive.read(LABELS_FILE).decode().split("\n") == LABELS
        assert all(item.compress_type == zipfile.ZIP_STORED for item in archive.infolist())
    assert read_metadata(path).labels == LABELS


def test_metadata_leaves_the_graph_unchanged_and_buffers_16_byte_aligned(bare):
    model = add_metadata(bare["classification"], classifier_info())
    x = np.random.default_rng(0).normal(size=(1, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_array_equal(TFLiteModel(model)(x)["logits"], TFLiteModel(bare["classification"])(x)["logits"])
    base = np.frombuffer(model, np.uint8).__array_interface__["data"][0]
    root = schema.Model.GetRootAs(model, 0)
    offsets = [
        root.Buffers(i).DataAsNumpy().__array_interface__["data"][0] - base
        for i in range(root.BuffersLength())
        if root.Buffers(i).DataLength()
    ]
    assert offsets and all(offset % 16 == 0 for offset in offsets)


def test_adding_metadata_again_replaces_it(bare):
    model = add_metadata(add_metadata(bare["classification"], classifier_info()), classifier_info(version="2"))
    assert read_metadata(model).version == "2"
    root = schema.Model.GetRootAs(model, 0)
    names = [root.Metadata(i).Name().decode() for i in range(root.MetadataLength())]
    assert names.count("TFLITE_METADATA") == 1


def test_a_model_without_metadata_raises_naming_the_file(bare, tmp_path):
    path = tmp_path / "bare.tflite"
    path.write_bytes(bare["classification"])
    with pytest.raises(MetadataError, match=rf"{path}: no vision-suite metadata"):
        read_metadata(path)
    assert read_model_metadata(bare["classification"]) is None


def test_a_file_that_is_not_tflite_raises_naming_it(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("circle\nsquare\n")
    with pytest.raises(EdgeKitError, match=rf"{path}: not a TFLite model"):
        read_metadata(path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"task": "keypoints"}, "unknown task"),
        ({"labels": []}, "needs its labels"),
        ({"mean": [1.0, 2.0], "std": [1.0, 2.0]}, "1 or 3 values"),
        ({"std": [0.0]}, "std > 0"),
    ],
)
def test_model_info_refuses_inconsistent_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        classifier_info(**overrides)


def test_input_range_is_the_normalised_pixel_range():
    assert classifier_info(mean=[0.0], std=[255.0]).input_range == (0.0, 1.0)
    assert classifier_info(mean=[127.5], std=[127.5]).input_range == (-1.0, 1.0)
