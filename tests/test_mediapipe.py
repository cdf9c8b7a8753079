"""Exported ``.tflite`` files load in MediaPipe Tasks from disk and agree with the edge kit.

MediaPipe is a test-only verification tool here (it imports TensorFlow); only its Tasks
API is used, never its metadata writers.
"""

import numpy as np
import pytest
from tiny_models import (
    DETECTOR_SCORES,
    LABELS,
    calibration,
    classifier_info,
    constant_detector,
    shapes,
    tiny_classifier,
    tiny_segmenter,
)

from tflite.metadata import ModelInfo
from tflite.predict import Predictor
from vision_core.export.tflite_export import export_tflite

mediapipe = pytest.importorskip("mediapipe")
from mediapipe.tasks.python import BaseOptions, vision  # noqa: E402

pytestmark = pytest.mark.slow


SEGMENTER_LABELS = ["background", "circle", "square"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mediapipe")
    model = tiny_classifier(train_steps=100)
    segmenter_info = ModelInfo("segmentation", "tiny_segmenter", SEGMENTER_LABELS, activation="softmax")
    return {
        "int8": export_tflite(model, folder / "int8.tflite", "int8", calibration(), info=classifier_info()),
        "float32": export_tflite(model, folder / "float32.tflite", "float32", info=classifier_info()),
        "segmenter": export_tflite(
            tiny_segmenter(), folder / "segmenter.tflite", "int8", calibration(), info=segmenter_info
        ),
        "detector": export_tflite(
            constant_detector(),
            folder / "detector.tflite",
            "float32",
            info=ModelInfo("detection", "constant_detector", LABELS),
        ),
    }


def _image(seed: int) -> np.ndarray:
    return np.ascontiguousarray(shapes(1, seed=seed)[0][0])


def _mediapipe_scores(path, images) -> tuple[np.ndarray, list[str]]:
    """Scores by class index ``[N, classes]`` and the top label of each image, from MediaPipe."""
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)))
    scores, top = np.zeros((len(images), len(LABELS))), []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for i, image in enumerate(images):
            result = classifier.classify(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image))
            categories = result.classifications[0].categories
            for category in categories:
                scores[i, category.index] = category.score
            top.append(categories[0].category_name)
    return scores, top


def _edge_kit_scores(path, images) -> np.ndarray:
    predictor = Predictor(path)
    return np.array(
        [[d["score"] for d in sorted(predictor(image).labels, key=lambda d: d["index"])] for image in images]
    )


@pytest.mark.parametrize("mode", ["int8", "float32"])
def test_mediapipe_classifier_loads_the_export_and_gives_the_edge_kit_scores(exports, mode):
    images = np.ascontiguousarray(shapes(8, seed=5)[0])  # at the input size: no resampling differences
    scores, top = _mediapipe_scores(exports[mode], images)
    ours = _edge_kit_scores(exports[mode], images)
    # int8: the same uint8 input gives the same uint8 output; float32: MediaPipe normalises with the metadata.
    np.testing.assert_allclose(scores, ours, atol=1e-6 if mode == "int8" else 1e-4)
    clear = np.sort(ours, axis=1)[:, -1] - np.sort(ours, axis=1)[:, -2] > 1 / 128
    assert clear.any()
    assert [t for t, c in zip(top, clear) if c] == [LABELS[i] for i in ours.argmax(1)[clear]]


def test_mediapipe_segmenter_reads_labels_and_activation_and_agrees_with_the_edge_kit(exports):
    image = _image(3)
    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=str(exports["segmenter"])),
        output_category_mask=True,
        output_confidence_masks=True,
    )
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        result = segmenter.segment(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image))
        assert segmenter.labels == SEGMENTER_LABELS
    confidence = np.stack([m.numpy_view() for m in result.confidence_masks], axis=-1)
    np.testing.assert_allclose(confidence.sum(axis=-1), 1.0, atol=1e-3)  # the softmax named in the metadata
    category = result.category_mask.numpy_view()[..., 0]
    # MediaPipe resizes scores before argmax, the edge kit resizes the class map: borders may differ.
    assert (category == Predictor(exports["segmenter"])(image).class_map).mean() > 0.9


def test_mediapipe_object_detector_reads_the_detection_outputs_by_metadata(exports):
    image = _image(4)
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(exports["detector"])), score_threshold=0.3
    )
    with vision.ObjectDetector.create_from_options(options) as detector:
        detections = detector.detect(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image)).detections
    ours = Predictor(exports["detector"])(image).labels
    assert [d.categories[0].category_name for d in detections] == [d["label"] for d in ours] == ["square", "cross"]
    np.testing.assert_allclose([d.categories[0].score for d in detections], DETECTOR_SCORES[:2], atol=1e-6)
    boxes = [
        [b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height]
        for b in (d.bounding_box for d in detections)
    ]
    np.testing.assert_allclose(boxes, [d["box"] for d in ours], atol=2.0)  # MediaPipe truncates origin and size
