"""Classification metrics, the confusion-matrix plot, and every classifier form behind one runner.

Scores are float [N, K] (logits or probabilities); images are normalised float32 [N, H, W, C].
"""

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vision_core.backend import keras
from vision_core.classification.evaluate import classification_metrics, top1_agreement
from vision_core.classification.plots import plot_confusion_matrix
from vision_core.classification.runners import (
    KerasClassifierRunner,
    ONNXClassifierRunner,
    TFLiteClassifierRunner,
    load_classifier_runner,
    scores_on,
)
from vision_core.data.classification import (
    ClassificationDataset,
    make_classification_dataset,
)
from vision_core.data.synthetic import normalize
from vision_core.quant.convert import convert

NAMES = ("cat", "dog", "fox")
# Four samples of three classes: predicted 0, 1, 2, 0 against labels 0, 2, 2, 1.
SCORES = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], np.float32)
LABELS = np.array([0, 2, 2, 1])


def test_metrics_of_a_hand_made_score_matrix():
    metrics = classification_metrics(SCORES, LABELS, NAMES)
    assert metrics == {
        "top1": 0.5,
        "top5": 1.0,
        "top5_k": 3,
        "samples": 4,
        "per_class_accuracy": {"cat": 1.0, "dog": 0.0, "fox": 0.5},
        "confusion_matrix": [[1, 0, 0], [1, 0, 0], [0, 1, 1]],
    }


def test_logits_score_like_their_probabilities():
    assert classification_metrics(np.log(SCORES) + 3.0, LABELS, NAMES) == classification_metrics(SCORES, LABELS, NAMES)


def test_top5_misses_a_label_ranked_sixth_and_a_class_without_samples_has_no_accuracy():
    scores = np.array([[6, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6]], np.float32)
    metrics = classification_metrics(scores, [5, 5], list("abcdef"))
    assert (metrics["top1"], metrics["top5"], metrics["top5_k"]) == (0.5, 0.5, 5)
    assert metrics["per_class_accuracy"] == {"a": None, "b": None, "c": None, "d": None, "e": None, "f": 0.5}


def test_a_tie_goes_to_the_lower_class_index():
    metrics = classification_metrics(np.array([[0.5, 0.5, 0.0]]), [1], NAMES)
    assert metrics["top1"] == 0.0 and metrics["confusion_matrix"][1] == [1, 0, 0]


def test_metrics_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="scores have 3 classes, class_names 2"):
        classification_metrics(SCORES, LABELS, NAMES[:2])
    with pytest.raises(ValueError, match="4 score rows for 3 labels"):
        classification_metrics(SCORES, LABELS[:3], NAMES)
    with pytest.raises(ValueError, match=r"labels \[3\] are outside 0..2"):
        classification_metrics(SCORES, [0, 1, 2, 3], NAMES)


def test_top1_agreement_counts_rows_with_the_same_arg_max():
    other = SCORES.copy()
    other[1] = [0.1, 0.2, 0.7]
    assert top1_agreement(SCORES, other) == 0.75
    with pytest.raises(ValueError, match=r"score shapes differ: \(4, 3\) vs \(3, 3\)"):
        top1_agreement(SCORES, other[:3])


def test_confusion_matrix_plot_is_a_png(tmp_path):
    path = plot_confusion_matrix(
        classification_metrics(SCORES, LABELS, NAMES)["confusion_matrix"],
        NAMES,
        tmp_path / "plots" / "confusion.png",
        title="val",
    )
    image = cv2.imread(str(path))
    assert path == tmp_path / "plots" / "confusion.png" and image.ndim == 3 and min(image.shape[:2]) > 200
    with pytest.raises(ValueError, match=r"confusion matrix of shape \(3, 3\) for 2 class names"):
        plot_confusion_matrix(np.eye(3), NAMES[:2], tmp_path / "bad.png")


def tiny_classifier(probabilities_too: bool = False):
    """Conv + pooling + dense on 8x8x3 images: 3 logits (and their softmax, named, when asked)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(3, name="logits")(x)
    if not probabilities_too:
        return keras.Model(inputs, logits, name="tiny")
    return keras.Model(
        inputs,
        {"logits": logits, "probabilities": keras.layers.Softmax(name="probabilities")(logits)},
        name="tiny_two_outputs",
    )


def images(count: int = 5) -> np.ndarray:
    return normalize(np.random.default_rng(0).integers(0, 256, (count, 8, 8, 3), dtype=np.uint8))


def test_keras_runner_returns_the_models_scores():
    model = tiny_classifier()
    np.testing.assert_allclose(
        KerasClassifierRunner(model, batch_size=2)(images()), model(images()).numpy(), rtol=1e-5, atol=1e-6
    )


def test_keras_runner_of_several_outputs_reads_the_probabilities():
    scores = KerasClassifierRunner(tiny_classifier(probabilities_too=True))(images())
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_keras_runner_refuses_images_of_another_size():
    with pytest.raises(ValueError, match="tiny: takes 8x8 images, got 4x4"):
        KerasClassifierRunner(tiny_classifier())(np.zeros((1, 4, 4, 3), np.float32))


def test_keras_file_loads_in_safe_mode_and_matches(tmp_path):
    model = tiny_classifier()
    model.save(tmp_path / "tiny.keras")
    runner = load_classifier_runner(tmp_path / "tiny.keras")
    assert isinstance(runner, KerasClassifierRunner)
    np.testing.assert_allclose(runner(images()), model(images()).numpy(), rtol=1e-5, atol=1e-6)


def test_float_tflite_runner_matches_keras(tmp_path):
    model = tiny_classifier()
    (tmp_path / "tiny.tflite").write_bytes(convert(model, "float32"))
    runner = load_classifier_runner(tmp_path / "tiny.tflite")
    assert isinstance(runner, TFLiteClassifierRunner) and runner.input_size == (8, 8)
    np.testing.assert_allclose(runner(images()), model(images()).numpy(), atol=1e-5)


def test_uint8_tflite_runner_feeds_the_pixels_themselves():
    calibration = [images(16)]
    runner = TFLiteClassifierRunner(
        convert(tiny_classifier(), "int8", calibration, io_dtype="uint8"), mean=127.5, std=127.5
    )
    pixels = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    direct = [runner.model.run_raw(pixels[i : i + 1]) for i in range(5)]
    scale, zero_point = next(iter(runner.model.outputs.values()))["quantization"]
    expected = np.concatenate([(next(iter(d.values())).astype(np.float32) - zero_point) * scale for d in direct])
    np.testing.assert_array_equal(runner(normalize(pixels)), expected)


def onnx_classifier(path):
    """An ONNX graph over image [N, 8, 8, 3]: features = channel means; probabilities = their softmax."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["features"], axes=[1, 2], keepdims=0),
            helper.make_node("Softmax", ["features"], ["probabilities"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 8, 8, 3])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def test_onnx_runner_reads_the_probabilities_output(tmp_path):
    runner = load_classifier_runner(onnx_classifier(tmp_path / "tiny.onnx"))
    assert isinstance(runner, ONNXClassifierRunner) and runner.input_size == (8, 8)
    means = images().mean(axis=(1, 2))
    expected = np.exp(means) / np.exp(means).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(runner(images()), expected, rtol=1e-5)


def test_load_refuses_unknown_suffixes_and_missing_files(tmp_path):
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"model.h5: unknown classifier format '.h5'"):
        load_classifier_runner(tmp_path / "model.h5")
    with pytest.raises(FileNotFoundError, match="gone.tflite: no such model file"):
        load_classifier_runner(tmp_path / "gone.tflite")


def test_scores_on_a_pipeline_keep_its_labels(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), np.full((8, 8, 3), 40 * i, np.uint8))
    dataset = ClassificationDataset("hand-made", "val", NAMES, paths, [2, 0, 1])
    model = tiny_classifier()
    scores, labels = scores_on(KerasClassifierRunner(model), make_classification_dataset(dataset, 8, 2))
    assert labels.tolist() == [2, 0, 1] and scores.shape == (3, 3)
    expected = model(normalize(np.stack([np.full((8, 8, 3), 40 * i, np.uint8) for i in range(3)]))).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
