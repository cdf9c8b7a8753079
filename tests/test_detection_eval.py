"""COCO evaluation of detections: exact pycocotools values for hand-made cases, every detector form
through one evaluator (Keras with post-process, its .keras file, float32 and uint8-input int8 TFLite
files, its ONNX file), plots.

Expected values follow pycocotools' definitions: per class and IoU threshold (.5:.05:.95), precision
is made monotone from the right and read at 101 recall thresholds 0, .01, ..., 1 (0 where the
recall is never reached); AP is their mean, mAP the mean over classes with ground truth.
"""

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.data.detection.augment import val_transform
from vision_core.data.detection.pipeline import to_minus_one_one
from vision_core.data.detection.types import DetectionDataset, DetectionRecord
from vision_core.detection.detector_io import Detections, DetectorInput, normalize
from vision_core.detection.evaluate import DatasetDetections, coco_evaluate, evaluate
from vision_core.detection.export_tail import convert_detector, with_postprocess
from vision_core.detection.nms import PostProcessConfig
from vision_core.detection.plots import plot_pr_curves, save_gallery
from vision_core.detection.runners import (
    KerasRunner,
    ONNXRunner,
    TFLiteRunner,
    load_runner,
)

RED, GREEN = (255, 0, 0), (0, 255, 0)


def _dataset(
    tmp_path: Path, boxes_per_image, class_names=("a", "b"), category_ids=(), size=(64, 96)
) -> DetectionDataset:
    """Black PNGs of ``size`` (H, W) with ground truth ``[(boxes xyxy pixels, classes), ...]``, image ids 1, 2, ..."""
    records = []
    for image_id, (boxes, classes) in enumerate(boxes_per_image, start=1):
        path = tmp_path / f"image_{image_id}.png"
        cv2.imwrite(str(path), np.zeros((*size, 3), np.uint8))
        records.append(DetectionRecord(image_id, path, boxes, classes, width=size[1], height=size[0]))
    return DetectionDataset(class_names, records, "val", tmp_path, category_ids=category_ids)


def _found(boxes, classes, scores) -> Detections:
    return Detections(np.asarray(boxes, np.float32), classes, scores)


# --- exact values ------------------------------------------------------------------------------


def test_ground_truth_as_predictions_scores_one(tmp_path):
    truth = [([[10, 10, 30, 40], [50, 5, 90, 25]], [0, 1]), ([[0, 0, 96, 64]], [1])]
    dataset = _dataset(tmp_path, truth)
    metrics = coco_evaluate(dataset, {i: _found(b, c, np.ones(len(c))) for i, (b, c) in enumerate(truth, start=1)})
    # (pycocotools' precision is tp / (tp + fp + eps): 1 - 2e-16 for one true positive)
    assert [metrics[k] for k in ("mAP", "mAP50", "mAP75", "AR100")] == pytest.approx([1.0] * 4, abs=1e-12)
    assert metrics["per_class"] == {
        "a": pytest.approx({"AP": 1.0, "AP50": 1.0, "AR100": 1.0, "ground_truth": 1, "detections": 1}, abs=1e-12),
        "b": pytest.approx({"AP": 1.0, "AP50": 1.0, "AR100": 1.0, "ground_truth": 2, "detections": 2}, abs=1e-12),
    }
    assert metrics["num_images"] == 2 and metrics["num_detections"] == 3 and metrics["skipped_images"] == 0


def test_one_of_two_boxes_found(tmp_path):
    # recall .5 at precision 1: recall thresholds 0, .01, ..., .50 read precision 1, the other 50 read 0
    truth = [([[10, 10, 30, 40], [50, 5, 90, 25]], [0, 0])]
    metrics = coco_evaluate(_dataset(tmp_path, truth), {1: _found([[10, 10, 30, 40]], [0], [0.9])})
    assert metrics["mAP"] == pytest.approx(51 / 101, abs=1e-12)
    assert metrics["mAP50"] == pytest.approx(51 / 101, abs=1e-12)
    assert metrics["AR100"] == 0.5
    assert metrics["per_class"]["b"] == {"AP": None, "AP50": None, "AR100": None, "ground_truth": 0, "detections": 0}
    assert list(metrics["pr_curve"]["precision"]) == ["a"]
    assert metrics["pr_curve"]["precision"]["a"] == pytest.approx([1.0] * 51 + [0.0] * 50, abs=1e-12)


def test_box_shifted_to_iou_five_sevenths_matches_at_five_of_ten_thresholds(tmp_path):
    # 60 x 40 box shifted 10 px: IoU = 50*40 / (70*40) = 5/7 ~ .714, matched at .50 .55 .60 .65 .70,
    # missed at .75 ... .95: AP 1 at five thresholds of ten
    truth = [([[10, 10, 70, 50]], [0])]
    metrics = coco_evaluate(_dataset(tmp_path, truth), {1: _found([[20, 10, 80, 50]], [0], [0.8])})
    assert metrics["mAP"] == pytest.approx(5 / 10, abs=1e-12)
    assert metrics["mAP50"] == pytest.approx(1.0, abs=1e-12) and metrics["mAP75"] == 0.0
    assert metrics["AR100"] == pytest.approx(0.5, abs=1e-12)


def test_a_false_positive_ranked_first_caps_precision_at_two_thirds(tmp_path):
    # ranked: FP (.9), TP (.8), TP (.7) -> precision 0, 1/2, 2/3 at recall 0, .5, 1; made monotone
    # from the right every recall threshold reads 2/3
    truth = [([[0, 0, 20, 20], [40, 30, 80, 60]], [1, 1])]
    found = _found([[60, 0, 90, 20], [0, 0, 20, 20], [40, 30, 80, 60]], [1, 1, 1], [0.9, 0.8, 0.7])
    metrics = coco_evaluate(_dataset(tmp_path, truth), {1: found})
    assert metrics["per_class"]["b"]["AP"] == pytest.approx(2 / 3, abs=1e-12)
    assert metrics["mAP"] == pytest.approx(2 / 3, abs=1e-12)
    assert metrics["AR100"] == 1.0


def test_no_detections_score_zero(tmp_path):
    truth = [([[10, 10, 30, 40]], [0]), ([[5, 5, 25, 25]], [1])]
    metrics = coco_evaluate(_dataset(tmp_path, truth), {1: Detections.empty(), 2: Detections.empty()})
    assert (metrics["mAP"], metrics["mAP50"], metrics["AR100"], metrics["num_detections"]) == (0.0, 0.0, 0.0, 0)
    assert metrics["per_class"]["a"]["AP"] == 0.0 and metrics["per_class"]["b"]["AR100"] == 0.0
    assert metrics["pr_curve"]["precision"]["a"] == [0.0] * 101


def test_class_ids_round_trip_through_unsorted_category_ids(tmp_path):
    # class 0 is category 7, class 1 category 3: pycocotools sorts category ids, the result keeps class order
    truth = [([[10, 10, 30, 40], [50, 5, 90, 25]], [0, 1])]
    dataset = _dataset(tmp_path, truth, class_names=("cat", "dog"), category_ids=(7, 3))
    right = coco_evaluate(dataset, {1: _found([[10, 10, 30, 40]], [0], [0.9])})
    assert right["per_class"]["cat"]["AP"] == pytest.approx(1.0, abs=1e-12) and right["per_class"]["dog"]["AP"] == 0.0
    swapped = coco_evaluate(dataset, {1: _found([[10, 10, 30, 40]], [1], [0.9])})
    assert swapped["per_class"]["cat"]["AP"] == 0.0 and swapped["per_class"]["dog"]["AP"] == 0.0
    assert right["mAP"] == pytest.approx(0.5, abs=1e-12) and swapped["mAP"] == 0.0


def test_a_class_id_the_dataset_lacks_is_refused(tmp_path):
    dataset = _dataset(tmp_path, [([[10, 10, 30, 40]], [0])])
    with pytest.raises(ValueError, match=r"image 1: detected class ids \[0, 2\] outside 0\.\.1"):
        coco_evaluate(dataset, {1: _found([[10, 10, 30, 40], [0, 0, 5, 5]], [0, 2], [0.9, 0.5])})


def test_images_without_detections_listed_are_left_out(tmp_path):
    truth = [([[10, 10, 30, 40]], [0]), ([[5, 5, 25, 25]], [0])]
    metrics = coco_evaluate(_dataset(tmp_path, truth), {1: _found([[10, 10, 30, 40]], [0], [1.0])})
    assert metrics["mAP"] == pytest.approx(1.0, abs=1e-12) and metrics["num_images"] == 1
    assert metrics["per_class"]["a"]["ground_truth"] == 1


# --- the runner side ---------------------------------------------------------------------------


class _GroundTruthRunner:
    """A fake detector: finds the ground truth of the image whose id is written in its top-left pixel."""

    def __init__(self, dataset):
        self.records = {r.image_id: r for r in dataset.records}

    def __call__(self, image):
        record = self.records[int(image[0, 0, 0])]
        return _found(record.boxes, record.classes, np.ones(len(record.classes)))


def test_evaluate_runs_the_runner_skips_an_unreadable_image_and_counts_it(tmp_path, caplog):
    truth = [([[10, 10, 30, 40]], [0]), ([[5, 5, 25, 25]], [1]), ([[0, 0, 9, 9]], [1])]
    dataset = _dataset(tmp_path, truth)
    for record in dataset.records[:2]:
        image = np.zeros((64, 96, 3), np.uint8)
        image[0, 0] = record.image_id
        cv2.imwrite(str(record.path), image)
    dataset.records[2].path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    dataset.records[2].width = dataset.records[2].height = None  # its size cannot be read either
    metrics = evaluate(_GroundTruthRunner(dataset), dataset, progress=False)
    assert metrics["mAP"] == pytest.approx(1.0, abs=1e-12) and metrics["num_images"] == 2
    assert metrics["skipped_images"] == 1 and list(metrics["skipped"]) == [str(dataset.records[2].path)]
    assert "image_3.png" in caplog.text


def test_one_preprocessing_equals_the_training_resize_and_normalisation():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), np.uint8)
    pixels = DetectorInput((32, 48)).pixels(image)
    expected = val_transform((32, 48))(image=image, bboxes=np.zeros((0, 4)), classes=np.zeros(0))["image"]
    np.testing.assert_array_equal(pixels[0], expected)
    np.testing.assert_array_equal(normalize(pixels), to_minus_one_one(pixels).numpy())
    assert normalize(np.array([0, 255], np.uint8)).tolist() == [-1.0, 1.0]


def test_detections_map_normalised_yxyx_back_to_original_pixels():
    outputs = {
        "boxes": np.array([[[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2]]]),
        "classes": np.array([[1.0, 0.0, 2.0]]),
        "scores": np.array([[0.6, 0.9, 0.7]]),
        "num_detections": np.array([2.0]),
    }
    found = DetectorInput((32, 32)).detections(outputs, (100, 200))  # the third row is past the count
    np.testing.assert_allclose(found.boxes, [[0, 0, 100, 50], [100, 25, 200, 75]])
    assert found.classes.tolist() == [0, 1] and found.scores.tolist() == pytest.approx([0.9, 0.6])
    letterboxed = DetectorInput((32, 32), "letterbox").detections(outputs, (100, 200), score_threshold=0.8)
    # 200x100 -> 32x16 padded 8 rows top: input box (0, 0, 16, 16) -> image rows (0 - 8) * 6.25, clipped
    np.testing.assert_allclose(letterboxed.boxes, [[0, 0, 100, 50]])


def test_boxes_far_outside_the_input_are_clipped_without_overflow():
    outputs = {
        "boxes": np.array([[[-3e38, -1e38, 2e38, 0.5], [1.5, 0.0, 3e38, 1.0]]], np.float32),
        "classes": np.array([[0.0, 1.0]]),
        "scores": np.array([[0.9, 0.8]]),
        "num_detections": np.array([2.0]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = DetectorInput((32, 32)).detections(outputs, (100, 200))
    np.testing.assert_array_equal(found.boxes, [[0, 0, 100, 100]])  # the second box lies below the image
    assert found.classes.tolist() == [0]


def test_load_runner_refuses_unknown_suffixes(tmp_path):
    with pytest.raises(ValueError, match=r"model\.pt.*'\.pt'"):
        load_runner(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        load_runner(tmp_path / "missing.tflite")


# --- every form through the same evaluator ---------------------------------------------------

CELL, GRID = 16, 4  # the detector's input: 64 x 64, a 4 x 4 grid of 16-pixel cells, one anchor per cell
ANCHORS = np.array(
    [[x * CELL, y * CELL, (x + 1) * CELL, (y + 1) * CELL] for y in range(GRID) for x in range(GRID)], np.float32
)
IMAGE_HW = (64, 128)  # stretched to 64 x 64: x halves, so box edges at even columns stay sharp


def colour_detector():
    """Hand-set weights, no training: class 0 "red" / 1 "green" scores sigmoid(10 * mean R / G in [-1, 1])
    of each cell, box encodings 0 (each detection is its cell), followed by the post-process.
    A cell filled with red scores sigmoid(10) ~ 1, half filled 0.5, black sigmoid(-10) < 0.05 (dropped)."""
    image = keras.Input((GRID * CELL, GRID * CELL, 3), name="image")
    cells = keras.layers.AveragePooling2D(CELL, name="cells")(image)
    colour = keras.layers.Conv2D(2, 1, activation="sigmoid", name="colour")
    encodings = keras.layers.Conv2D(4, 1, kernel_initializer="zeros", name="encodings")
    scores = keras.layers.Reshape((GRID * GRID, 2), name="class_scores")(colour(cells))
    boxes = keras.layers.Reshape((GRID * GRID, 4), name="box_encodings")(encodings(cells))
    colour.set_weights([np.array([[[[10, 0], [0, 10], [0, 0]]]], np.float32), np.zeros(2, np.float32)])
    raw = keras.Model(image, {"box_encodings": boxes, "class_scores": scores}, name="colour_detector")
    return with_postprocess(raw, ANCHORS, PostProcessConfig(num_classes=2, max_detections=10))


def colour_dataset(tmp_path) -> DetectionDataset:
    """Three 128x64 images (boxes xyxy pixels of them; input cells are 32 x 16 there). Red: two squares on a
    cell (found), two straddling two cells (missed: two detections at IoU 1/3 each). Green: two on a cell."""
    scenes = [
        [(RED, (0, 0, 32, 16)), (GREEN, (96, 32, 128, 48))],
        [(RED, (16, 16, 48, 32)), (RED, (32, 48, 64, 64))],
        [(RED, (80, 0, 112, 16)), (GREEN, (32, 16, 64, 32))],
    ]
    records = []
    for image_id, scene in enumerate(scenes, start=1):
        image = np.zeros((*IMAGE_HW, 3), np.uint8)
        for colour, (x0, y0, x1, y1) in scene:
            image[y0:y1, x0:x1] = colour
        path = tmp_path / f"scene_{image_id}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        records.append(
            DetectionRecord(
                image_id, path, [box for _, box in scene], [0 if colour == RED else 1 for colour, _ in scene]
            )
        )
    return DetectionDataset(("red", "green"), records, "val", tmp_path)


# red: 2 of 4 found first, then 4 false positives at .5 -> 51/101 at every IoU; green: 1.0
COLOUR_MAP = (51 / 101 + 1.0) / 2


def _summary(metrics):
    return {key: metrics[key] for key in ("mAP", "mAP50", "mAP75", "AR100", "per_class", "pr_curve", "num_detections")}


@pytest.mark.slow
@pytest.mark.xdist_group("detection_eval_forms")
def test_keras_tflite_and_onnx_forms_score_the_same(tmp_path):
    from vision_core.export.onnx_export import export_onnx_from_saved_model
    from vision_core.quant.convert import write_saved_model

    detector = colour_detector()
    dataset = colour_dataset(tmp_path)
    keras_metrics = evaluate(load_runner(detector), dataset, progress=False)
    assert keras_metrics["mAP"] == pytest.approx(COLOUR_MAP, abs=1e-12)
    assert keras_metrics["per_class"]["red"] == {
        "AP": pytest.approx(51 / 101, abs=1e-12),
        "AP50": pytest.approx(51 / 101, abs=1e-12),
        "AR100": 0.5,
        "ground_truth": 4,
        "detections": 6,
    }
    assert keras_metrics["num_detections"] == 8

    tflite_path = tmp_path / "colour.tflite"
    tflite_path.write_bytes(convert_detector(detector, "float32"))
    runner = load_runner(tflite_path)
    assert isinstance(runner, TFLiteRunner) and TFLiteModel(tflite_path).input_dtype == np.float32
    assert _summary(evaluate(runner, dataset, progress=False)) == _summary(keras_metrics)

    onnx_path = export_onnx_from_saved_model(write_saved_model(detector, tmp_path / "sm"), tmp_path / "colour.onnx")
    runner = load_runner(onnx_path)
    assert isinstance(runner, ONNXRunner) and runner.input_size == (64, 64)
    assert _summary(evaluate(runner, dataset, progress=False)) == _summary(keras_metrics)

    detector.save(tmp_path / "colour.keras")
    runner = load_runner(tmp_path / "colour.keras")
    assert isinstance(runner, KerasRunner)
    assert _summary(evaluate(runner, dataset, progress=False)) == _summary(keras_metrics)


@pytest.mark.slow
@pytest.mark.xdist_group("detection_eval_forms")
def test_int8_tflite_with_uint8_input_gets_the_pixels_and_scores_like_keras(tmp_path):
    detector = colour_detector()
    dataset = colour_dataset(tmp_path)
    prepare = DetectorInput((64, 64))
    calibration = [normalize(prepare.pixels(dataset.sample(i)["image"])) for i in range(len(dataset))]
    tflite_path = tmp_path / "colour_int8.tflite"
    tflite_path.write_bytes(convert_detector(detector, "int8", calibration, input_dtype="uint8"))
    assert TFLiteModel(tflite_path).input_dtype == np.uint8
    metrics = evaluate(load_runner(tflite_path), dataset, progress=False)
    # int8 scores move a little (half-cell scores ~.5, full ~1) but the ranking and the boxes do not
    assert metrics["mAP"] == pytest.approx(COLOUR_MAP, abs=1e-12)
    assert {name: c["detections"] for name, c in metrics["per_class"].items()} == {"red": 6, "green": 2}


def test_plots_write_pngs_of_the_expected_size(tmp_path):
    truth = [([[10, 10, 30, 40], [50, 5, 90, 25]], [0, 1]), ([[0, 0, 60, 30]], [1]), ([[5, 5, 25, 25]], [0])]
    dataset = _dataset(tmp_path, truth)
    detections = DatasetDetections(
        {
            1: _found([[12, 10, 30, 40]], [0], [0.9]),
            2: _found([[0, 0, 60, 30], [1, 1, 5, 5]], [1, 0], [0.8, 0.1]),
            3: Detections.empty(),
        }
    )
    metrics = coco_evaluate(dataset, detections)
    curves = cv2.imread(str(plot_pr_curves(metrics, tmp_path / "plots" / "pr.png")))
    assert curves.shape == (500, 700, 3)
    gallery = cv2.imread(
        str(save_gallery(dataset, detections.by_image, tmp_path / "gallery.png", columns=2, tile_size=100))
    )
    assert gallery.shape == (200, 200, 3)
    # image 1 (96x64) fills the top-left tile's width, 100 x 67 centred: its white ground-truth box is drawn
    assert (gallery[:100, :100] == 255).all(axis=-1).any()
