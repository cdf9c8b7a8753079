"""Decoding + per-class NMS, and the TFLite_Detection_PostProcess tail: Keras, float32 and int8 TFLite agree."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tflite.audit import FloatOpError, audit_ops
from tflite.runtime import TFLiteModel
from vision_core.backend import keras
from vision_core.detection.anchors import RetinaNetAnchors
from vision_core.detection.boxes import convert_format, to_normalized, to_pixels
from vision_core.detection.export_tail import (
    DetectionPostProcess,
    convert_detector,
    postprocess_options,
    require_int8_detector,
    with_postprocess,
)
from vision_core.detection.nms import (
    POSTPROCESS_OP,
    PostProcessConfig,
    decode_detections,
    multiclass_nms,
    op_anchors,
)

# Hand-made NMS case, xyxy pixels; box 1 overlaps box 0 with IoU 90 / 110.
BOXES = [[[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [40, 40, 50, 50]]]
SCORES = [[[0.9, 0.1], [0.8, 0.7], [0.3, 0.05], [0.29, 0.0]]]

SIZE, NUM_CLASSES = 32, 3
ANCHORS = RetinaNetAnchors(strides=(16, 32), sizes=(16.0, 32.0), scales=(1.0,))((SIZE, SIZE))  # 15 anchors


def _numpy(detections):
    return {name: np.asarray(value) for name, value in detections.items()}


def test_per_class_nms_of_the_hand_made_case():
    result = _numpy(multiclass_nms(BOXES, SCORES, max_detections=5, score_threshold=0.3, iou_threshold=0.5))
    # class 0: box 0 (0.9) suppresses box 1 (0.8); box 2 sits exactly on the threshold and stays.
    # class 1: only box 1 (0.7) passes the threshold. Box 3 (0.29) is below it.
    np.testing.assert_array_equal(result["num_detections"], [3])
    np.testing.assert_array_equal(result["classes"], [[0, 1, 0, 0, 0]])
    np.testing.assert_allclose(result["scores"], [[0.9, 0.7, 0.3, 0, 0]])
    np.testing.assert_array_equal(result["boxes"], [BOXES[0][:3] + [[0, 0, 0, 0]] * 2])


def test_nms_caps_the_number_of_detections():
    result = _numpy(multiclass_nms(BOXES, SCORES, max_detections=2, score_threshold=0.3))
    np.testing.assert_array_equal(result["num_detections"], [2])
    np.testing.assert_allclose(result["scores"], [[0.9, 0.7]])


def test_class_agnostic_nms_uses_each_box_best_class():
    result = _numpy(multiclass_nms(BOXES, SCORES, max_detections=5, score_threshold=0.3, class_agnostic=True))
    np.testing.assert_array_equal(result["num_detections"], [2])
    np.testing.assert_array_equal(result["classes"][0, :2], [0, 0])
    np.testing.assert_allclose(result["scores"][0, :2], [0.9, 0.3])


def test_decode_detections_returns_pixel_boxes_of_the_anchors_for_zero_encodings():
    anchors = [[0, 0, 10, 10], [50, 50, 90, 70]]
    scores = [[[0.1, 0.6, 0.2], [0.1, 0.1, 0.8]]]  # column 0 background
    result = _numpy(
        decode_detections(
            np.zeros((1, 2, 4)), scores, anchors, background_column=True, max_detections=3, score_threshold=0.5
        )
    )
    np.testing.assert_array_equal(result["num_detections"], [2])
    np.testing.assert_array_equal(result["classes"][0, :2], [1, 0])
    np.testing.assert_allclose(result["boxes"][0, :2], [anchors[1], anchors[0]])


def test_op_anchors_are_normalised_centre_size_in_y_x_order():
    np.testing.assert_allclose(op_anchors([[0, 0, 10, 20]], (40, 20)), [[0.25, 0.25, 0.5, 0.5]])


def test_implements_signature_names_every_attribute_of_the_op():
    config = PostProcessConfig(num_classes=3, max_detections=10, score_threshold=0.3, use_regular_nms=False)
    assert config.implements_signature() == (
        'name: "TFLite_Detection_PostProcess" '
        'attr { key: "max_detections" value { i: 10 } } '
        'attr { key: "max_classes_per_detection" value { i: 1 } } '
        'attr { key: "detections_per_class" value { i: 100 } } '
        'attr { key: "use_regular_nms" value { b: false } } '
        'attr { key: "nms_score_threshold" value { f: 0.300000 } } '
        'attr { key: "nms_iou_threshold" value { f: 0.500000 } } '
        'attr { key: "y_scale" value { f: 10.000000 } } attr { key: "x_scale" value { f: 10.000000 } } '
        'attr { key: "h_scale" value { f: 5.000000 } } attr { key: "w_scale" value { f: 5.000000 } } '
        'attr { key: "num_classes" value { i: 3 } }'
    )


def _raw_outputs(background_column, seed=0, batch=2):
    rng = np.random.default_rng(seed)
    encodings = rng.normal(0, 1, (batch, len(ANCHORS), 4)).astype(np.float32)
    scores = rng.uniform(0, 1, (batch, len(ANCHORS), NUM_CLASSES + background_column)).astype(np.float32)
    return encodings, scores


@pytest.mark.parametrize("background_column, regular", [(False, True), (True, False)])
def test_keras_tail_equals_decode_detections_in_normalised_yxyx(background_column, regular):
    config = PostProcessConfig(num_classes=NUM_CLASSES, max_detections=10, score_threshold=0.3, use_regular_nms=regular)
    encodings, scores = _raw_outputs(background_column)
    tail = _numpy(DetectionPostProcess(ANCHORS, (SIZE, SIZE), config)(encodings, scores))
    reference = _numpy(
        decode_detections(
            encodings,
            scores,
            ANCHORS,
            background_column=background_column,
            max_detections=10,
            score_threshold=0.3,
            class_agnostic=not regular,
        )
    )
    np.testing.assert_allclose(
        tail["boxes"], to_normalized(reference["boxes"], (SIZE, SIZE), "xyxy").numpy()[..., [1, 0, 3, 2]], atol=1e-6
    )
    np.testing.assert_array_equal(tail["classes"], reference["classes"])
    np.testing.assert_array_equal(tail["scores"], reference["scores"])
    np.testing.assert_array_equal(tail["num_detections"], reference["num_detections"])


def test_postprocess_layer_round_trips_its_config():
    layer = DetectionPostProcess(ANCHORS, (SIZE, SIZE), PostProcessConfig(num_classes=NUM_CLASSES))
    clone = DetectionPostProcess.from_config(layer.get_config())
    assert clone.config == layer.config and clone.image_size == (SIZE, SIZE)
    np.testing.assert_array_equal(clone.anchors, ANCHORS)


# --- conversion ------------------------------------------------------------------------------


def tiny_detector(background_column: bool):
    """Raw head outputs for ANCHORS from two conv levels (2x2 and 1x1 cells, 3 anchors each):
    ``box_encodings [B, 15, 4]`` and ``class_scores [B, 15, K]`` sigmoid (or ``K + 1`` softmax,
    column 0 background)."""
    keras.utils.set_random_seed(0)
    columns = NUM_CLASSES + background_column
    image = keras.Input((SIZE, SIZE, 3), name="image")
    p4 = keras.layers.Conv2D(8, 3, strides=16, padding="same", activation="relu", name="p4")(image)
    p5 = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="p5")(p4)
    encodings, logits = [], []
    for name, level in (("p4", p4), ("p5", p5)):
        boxes = keras.layers.Conv2D(3 * 4, 1, name=f"{name}_boxes")(level)
        classes = keras.layers.Conv2D(3 * columns, 1, name=f"{name}_classes")(level)
        encodings.append(keras.layers.Reshape((-1, 4), name=f"{name}_boxes_flat")(boxes))
        logits.append(keras.layers.Reshape((-1, columns), name=f"{name}_classes_flat")(classes))
    encodings = keras.layers.Concatenate(axis=1, name="box_encodings")(encodings)
    logits = keras.layers.Concatenate(axis=1, name="class_logits")(logits)
    scores = keras.layers.Activation("softmax" if background_column else "sigmoid", name="class_scores")(logits)
    return keras.Model(image, {"box_encodings": encodings, "class_scores": scores}, name="tiny_detector")


def _images(count, seed):
    return np.random.default_rng(seed).uniform(-1, 1, (count, SIZE, SIZE, 3)).astype(np.float32)


def _op_inputs_and_outputs(flatbuffer, image):
    """Run on the reference kernels keeping every tensor: the op's inputs and the signature outputs."""
    interpreter = Interpreter(
        model_content=flatbuffer,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    model = TFLiteModel(flatbuffer)
    outputs = interpreter.get_signature_runner("serving_default")(image=model.quantize_input(image))
    op = next(op for op in interpreter._get_ops_details() if op["op_name"] == POSTPROCESS_OP)
    return [interpreter.get_tensor(i) for i in op["inputs"]], outputs


def _pixel_detections(outputs):
    """TFLite outputs -> (count, rows of (score, class, xyxy pixel box)) sorted canonically."""
    count = int(outputs["num_detections"][0])
    boxes = to_pixels(convert_format(outputs["boxes"][0, :count], "yxyx", "xyxy"), (SIZE, SIZE)).numpy()
    rows = np.concatenate([outputs["scores"][0, :count, None], outputs["classes"][0, :count, None], boxes], axis=1)
    return count, rows[np.lexsort((rows[:, 2], rows[:, 1], -rows[:, 0]))]


@pytest.mark.slow
@pytest.mark.parametrize("background_column, regular", [(False, True), (True, False)])
def test_float32_conversion_ends_in_the_op_and_matches_keras(background_column, regular):
    config = PostProcessConfig(num_classes=NUM_CLASSES, max_detections=10, score_threshold=0.3, use_regular_nms=regular)
    detector = with_postprocess(tiny_detector(background_column), ANCHORS, config)
    flatbuffer = convert_detector(detector, "float32")

    assert [r.op for r in audit_ops(flatbuffer)][-1] == POSTPROCESS_OP
    with pytest.raises(FloatOpError, match="CONV_2D"):
        require_int8_detector(flatbuffer)
    options = postprocess_options(flatbuffer)
    assert options == pytest.approx(
        {
            "max_detections": 10,
            "max_classes_per_detection": 1,
            "num_classes": 3,
            "nms_score_threshold": 0.3,
            "nms_iou_threshold": 0.5,
            "use_regular_nms": int(regular),
            "y_scale": 10.0,
            "x_scale": 10.0,
            "h_scale": 5.0,
            "w_scale": 5.0,
        }
    )
    image = _images(1, seed=1)
    converted = TFLiteModel(flatbuffer)(image)
    expected = _numpy(detector(image))
    np.testing.assert_array_equal(converted["num_detections"], expected["num_detections"])
    count = int(converted["num_detections"][0])
    assert count > 0
    if regular:  # the fast mode leaves the rows past the count unwritten
        count = config.max_detections
    for name in ("boxes", "scores"):
        np.testing.assert_allclose(converted[name][0, :count], expected[name][0, :count], atol=1e-5)
    np.testing.assert_array_equal(converted["classes"][0, :count], expected["classes"][0, :count])


@pytest.mark.slow
def test_int8_conversion_is_integer_up_to_the_op_and_matches_decoding_of_its_inputs():
    # max_detections above the 45 (anchor, class) candidates: no cut-off among equal int8 scores.
    config = PostProcessConfig(num_classes=NUM_CLASSES, max_detections=50, score_threshold=0.3)
    raw = tiny_detector(background_column=False)
    flatbuffer = convert_detector(
        with_postprocess(raw, ANCHORS, config), "int8", [_images(8, seed) for seed in range(4)], input_dtype="uint8"
    )

    records = audit_ops(flatbuffer)  # convert_detector has already run require_int8_detector
    assert {r.op for r in records if r.is_float} == {"DEQUANTIZE", POSTPROCESS_OP}
    model = TFLiteModel(flatbuffer)
    assert model.input_dtype == np.uint8
    assert all(model.outputs[name]["dtype"] == np.float32 for name in model.outputs)

    image = _images(1, seed=10)
    (encodings, scores, anchors), reference_run = _op_inputs_and_outputs(flatbuffer, image)
    np.testing.assert_allclose(anchors, op_anchors(ANCHORS, (SIZE, SIZE)))
    keras_raw = _numpy(raw(image))
    np.testing.assert_allclose(encodings, keras_raw["box_encodings"], atol=0.05)  # int8 steps
    np.testing.assert_allclose(scores, keras_raw["class_scores"], atol=0.02)

    count, detections = _pixel_detections(model(image))
    assert count > 0 and np.isfinite(detections).all()
    np.testing.assert_array_equal(detections, _pixel_detections(reference_run)[1])
    decoded = _numpy(decode_detections(encodings, scores, ANCHORS, max_detections=50, score_threshold=0.3))
    assert decoded["num_detections"][0] == count
    expected = np.concatenate(
        [decoded["scores"][0, :count, None], decoded["classes"][0, :count, None], decoded["boxes"][0, :count]], axis=1
    )
    expected = expected[np.lexsort((expected[:, 2], expected[:, 1], -expected[:, 0]))]
    np.testing.assert_allclose(detections, expected, atol=1e-4)
